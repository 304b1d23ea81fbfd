"""How much a `basin serve` grows under queries that make memory out of nothing, one at a
time, with `[sql] memory_limit` and `query_memory_limit` at 256 MiB: each query's answer
(a refusal, normally) and the server's resident memory at its peak over what it held before
the query (sampled every 10 ms from /proc). docs/serving.md ("Memory under hostile
queries") quotes it; tests/python/test_statements.py checks the bound.

    python bench/hostile_memory.py --basin "$CARGO_TARGET_DIR/release/basin"

Prints a markdown table with the machine and the date.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import serving
from fork_cost import machine

QUERIES = [
    ("generate_series of 1e8", "SELECT generate_series(1, 100000000) AS s"),
    ("range of 1e8", "SELECT range(100000000) AS s"),
    ("repeat to 500 MB", "SELECT length(repeat('x', 500000000))"),
    ("wide rows as JSON (100 kB x 10,000)", "SELECT repeat('x', 100000) AS s FROM range(10000)"),
    ("unnest of a 5e7 series", "SELECT count(*) FROM (SELECT unnest(generate_series(1, 50000000)))"),
    ("concat of one 5 MB column x 100", "SELECT length(concat(" + ",".join(["s"] * 100) + ")) FROM (SELECT repeat('x', 5000000) AS s)"),
    ("|| chain of one 5 MB column x 100", "SELECT length(" + "||".join(["s"] * 100) + ") FROM (SELECT repeat('x', 5000000) AS s)"),
    ("array_repeat of 1e8", "SELECT cardinality(array_repeat(1, 100000000))"),
    ("lpad to 500 MB", "SELECT length(lpad('x', 500000000))"),
    ("a 900 kB constant on 100,000 rows", "SELECT '" + "x" * 900000 + "' AS s, value FROM range(100000) ORDER BY value LIMIT 3"),
    ("string_agg of 1 GB", "SELECT length(string_agg(repeat('x', 1000), ',')) FROM range(1000000)"),
    ("array_agg of 1e8", "SELECT cardinality(array_agg(value)) FROM range(100000000)"),
    ("a window over 1e8 rows", "SELECT count(w) FROM (SELECT avg(value) OVER () AS w FROM range(100000000))"),
]

SETTINGS = '[sql]\nquery_timeout = "60s"\nmemory_limit = "256MiB"\nquery_memory_limit = "256MiB"\n'


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def measure(basin: str, home: Path) -> list:
    """(query, HTTP status, growth in MiB) for each query."""
    proc, ports = serving.start(basin, home)
    rows = []
    try:
        url = f"http://127.0.0.1:{ports['http']}/api/v1/query"
        for name, sql in QUERIES:
            time.sleep(1.0)
            before = rss_mib(proc.pid)
            peak, done = [before], threading.Event()

            def watch():
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mib(proc.pid))
                    time.sleep(0.01)

            watcher = threading.Thread(target=watch)
            watcher.start()
            request = urllib.request.Request(url, data=json.dumps({"sql": sql}).encode(),
                                             headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=300) as answer:
                    answer.read()
                    status = answer.status
            except urllib.error.HTTPError as e:
                e.read()
                status = e.code
            done.set()
            watcher.join()
            rows.append((name, status, peak[0] - before))
            print(f"{name}: {status}, +{peak[0] - before:.0f} MiB", file=sys.stderr, flush=True)
    finally:
        proc.kill()
        proc.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--basin", required=True, help="the basin binary to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        home = Path(work) / "lake"
        subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)
        (home / "basin.toml").write_text(SETTINGS)
        rows = measure(args.basin, home)
    print(f"Machine: {machine()}  ")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ")
    print(f"Binary: {args.basin}; memory_limit = query_memory_limit = 256 MiB  ")
    print()
    print("| query | answer | server growth at peak [MiB] |")
    print("| --- | ---: | ---: |")
    for name, status, grown in rows:
        print(f"| {name} | {status} | {grown:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
