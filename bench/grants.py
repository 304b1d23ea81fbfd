"""What grants cost a reader: one small query's latency through each door of `basin serve`,
for a token whose grants the catalog applies, with no `[[grants]]` declared and with 100
declared (99 for other principals, one adding to this token's), in one run on one machine:

    python bench/grants.py BASIN [RUNS]

Doors: the HTTP API (`POST /api/v1/query`, keep-alive), Iceberg REST (`GET` of a table's
metadata), Postgres (psycopg, one connection). Prints a markdown table with the machine and
the date.
"""

import datetime
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import front_doors  # noqa: E402
import front_doors_ab  # noqa: E402
import serving  # noqa: E402

QUERY = front_doors.QUERY


def lakehouse(basin: str, home: Path, declared: int) -> str:
    """The front-door lakehouse (tpch.nation), `declared` [[grants]] in its basin.toml; the
    secret of a token whose grants read tpch.* on main."""
    front_doors_ab.lakehouse(basin, home)
    grants = []
    for i in range(declared):
        to = "bench" if i == 0 else f"team{i}"
        grants.append(f'[[grants]]\nto = "{to}"\nread = ["ns{i}.*", "tpch.*"]\nbranches = ["main", "dev/*"]\n')
    (home / "basin.toml").write_text("\n".join(grants))
    out = subprocess.run([basin, "--home", str(home), "token", "create", "--name", "bench",
                          "--grant", "read:tpch.*@main"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def measure(basin: str, home: Path, token: str, runs: int) -> dict:
    proc, ports = serving.start(basin, home, "--pg-listen", "127.0.0.1:0", tokens=True)
    try:
        # The query runs each time (no answer from the result cache): the grants cost is measured.
        auth = {"authorization": f"Bearer {token}", "content-type": "application/json", "cache-control": "no-cache"}
        connection = http.client.HTTPConnection("127.0.0.1", ports["http"])
        body = json.dumps({"sql": QUERY})

        def http_query():
            connection.request("POST", "/api/v1/query", body=body, headers=auth)
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["row_count"] == 5

        def iceberg_load():
            connection.request("GET", "/v1/main/namespaces/tpch/tables/nation", headers=auth)
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()

        pg = psycopg.connect(host="127.0.0.1", port=ports["pg"], dbname="main", user="bench",
                             password=token, autocommit=True)

        def pg_query():
            assert len(pg.execute(QUERY).fetchall()) == 5

        figures = {}
        for name, fn in [("HTTP API query", http_query), ("Iceberg REST load table", iceberg_load),
                         ("Postgres query (psycopg)", pg_query)]:
            p50, p95 = front_doors.percentiles(front_doors.timed(fn, runs))
            figures[f"{name}, p50 [ms]"] = p50
            figures[f"{name}, p95 [ms]"] = p95
        pg.close()
        connection.close()
        return figures
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    basin = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory() as work:
        figures = {}
        for label, declared in (("none", 0), ("100", 100)):
            home = Path(work) / label
            token = lakehouse(basin, home, declared)
            figures[label] = measure(basin, home, token, runs)
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"{platform.machine()}, {os.cpu_count()} cores, {now:%Y-%m-%d %H:%M} UTC, {runs} runs each")
    print("| figure | no [[grants]] | 100 [[grants]] |\n| --- | ---: | ---: |")
    for figure, none in figures["none"].items():
        print(f"| {figure} | {none:.2f} | {figures['100'][figure]:.2f} |")


if __name__ == "__main__":
    main()
