"""Latency of one small query through each of Basin's front doors, against one lakehouse:

- `basin query` (a new process per query, as a shell user runs it);
- the HTTP API (`POST /api/v1/query`, one keep-alive connection);
- the Postgres wire protocol (psycopg, one connection; the query as is, and with a
  parameter).

The query is a filter over TPC-H `nation` (25 rows), so the figures are the overhead of
each door plus planning, not scan speed.
"""

import http.client
import json
import statistics
import subprocess
import time
from pathlib import Path

import psycopg

import serving

QUERY = "SELECT n_name FROM tpch.nation WHERE n_regionkey = 1 ORDER BY n_name"


def percentiles(samples: list) -> tuple:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered), p95


def timed(fn, runs: int) -> list:
    for _ in range(3):  # warm up
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure(basin: str, home: Path, runs: int = 50) -> list:
    """Rows of (figure, milliseconds) for the benchmark table."""
    proc, ports = serving.start(basin, home, "--pg-listen", "127.0.0.1:0")
    try:
        http_port, pg_port = ports["http"], ports["pg"]

        def cli():
            out = subprocess.run([basin, "--home", str(home), "query", QUERY, "--format", "json"],
                                 capture_output=True, text=True, check=True)
            assert len(json.loads(out.stdout)) == 5

        connection = http.client.HTTPConnection("127.0.0.1", http_port)
        body = json.dumps({"sql": QUERY})

        def http_query():
            # The query runs each time: the other doors have no result cache.
            connection.request("POST", "/api/v1/query", body=body,
                               headers={"content-type": "application/json", "cache-control": "no-cache"})
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["row_count"] == 5

        pg = psycopg.connect(host="127.0.0.1", port=pg_port, dbname="main", user="bench", autocommit=True)

        def pg_plain():
            assert len(pg.execute(QUERY).fetchall()) == 5

        def pg_parameter():
            assert len(pg.execute("SELECT n_name FROM tpch.nation WHERE n_regionkey = %s ORDER BY n_name",
                                  (1,)).fetchall()) == 5

        figures = []
        for name, fn in [("basin query (new process)", cli), ("HTTP API, JSON", http_query),
                         ("Postgres wire (psycopg)", pg_plain),
                         ("Postgres wire (psycopg), with a parameter", pg_parameter)]:
            p50, p95 = percentiles(timed(fn, runs))
            figures.append((f"small query via {name}, p50 [ms]", p50))
            figures.append((f"small query via {name}, p95 [ms]", p95))
        pg.close()
        connection.close()
        return figures
    finally:
        proc.terminate()
        proc.wait(timeout=30)
