"""Incremental processing (issue #48), timed on the release binary:

1. commit -> function start: a function deployed with @basin.on_commit, under `basin serve`,
   notes the time it starts; each of --commits one-row imports is timed from its catalog
   commit (`basin log`) to that start. p50 and p99.
2. an incremental pipeline model over TPC-H lineitem (--scale) after a 1% append, against a
   full rebuild (`basin run --full-refresh`) of the same project on the same data: the
   seconds of each `basin run`, and whether the two tables are equal (row count and an
   order-independent sum per column).

Prints a markdown table with the machine and the date.

    python bench/incremental.py --basin target/release/basin [--scale 1] [--commits 50]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import generate, machine  # noqa: E402

STAMP = '''
import time

import basin
import pyarrow as pa


@basin.python("3.11", timeout="30s")
@basin.on_commit("bench.events", to="bench.starts")
def stamp(event, context):
    return pa.table({"commit": [event["commit"]], "started_ms": [int(time.time() * 1000)]})
'''

MODEL = """-- basin: incremental
SELECT l_orderkey, l_linenumber, l_shipdate, l_extendedprice * (1 - l_discount) AS revenue
FROM tpch.lineitem WHERE _change = 'insert' AND l_quantity > 10
"""


def basin(binary, home, *args, check=True):
    done = subprocess.run([binary, "--home", str(home), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"basin {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def commit_to_start(binary, home, work, commits):
    functions = work / "functions"
    functions.mkdir()
    (functions / "stamp.py").write_text(STAMP)
    row = work / "row.csv"
    row.write_text("id\n1\n")
    basin(binary, home, "import", str(row), "--table", "bench.events")
    basin(binary, home, "deploy", str(functions))
    server = subprocess.Popen([binary, "--home", str(home), "serve", "--no-auth", "--listen", "127.0.0.1:0"],
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # the watcher's first look, and the function's environment
        basin(binary, home, "import", str(row), "--table", "bench.events")  # a warm-up
        time.sleep(5)
        for _ in range(commits):
            basin(binary, home, "import", str(row), "--table", "bench.events")
            time.sleep(1.0)
        deadline = time.time() + 120
        while time.time() < deadline:
            starts = json.loads(basin(binary, home, "query", "SELECT * FROM bench.starts", "--format", "json",
                                      check=False) or "[]")
            if len(starts) >= commits + 1:
                break
            time.sleep(1)
    finally:
        server.kill()
        server.wait()
    # Each event's output is a commit too: look far enough back.
    log = json.loads(basin(binary, home, "log", "-n", str(3 * commits + 20), "--format", "json"))
    committed = {e["id"]: e["created_at_ms"] for e in log}
    latencies = [s["started_ms"] - committed[s["commit"]] for s in starts if s["commit"] in committed]
    return latencies[1:]  # the warm-up's is not counted


def incremental_vs_full(binary, home, work, scale, data):
    csv_dir = generate(scale, Path(data))
    lineitem = csv_dir / "lineitem.csv"
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    log(f"== importing lineitem (scale {scale:g})")
    basin(binary, home, "import", str(lineitem), "--table", "tpch.lineitem")
    rows = int(json.loads(basin(binary, home, "query", "SELECT count(*) AS n FROM tpch.lineitem",
                                "--format", "json"))[0]["n"])
    # 1% more rows: the first 1% of lineitem again, as Parquet.
    extra = work / "extra.parquet"
    basin(binary, home, "query", f"SELECT * FROM tpch.lineitem LIMIT {rows // 100}", "--format", "parquet",
          "-o", str(extra))
    project = work / "project"
    project.mkdir()
    (project / "basin.toml").write_text('[project]\nname = "inc"\nnamespace = "mart"\npython = "3.11"\n')
    (project / "revenue.sql").write_text(MODEL)
    log("== first run (builds the model)")
    basin(binary, home, "run", str(project))
    basin(binary, home, "import", str(extra), "--table", "tpch.lineitem")
    start = time.perf_counter()
    basin(binary, home, "run", str(project))
    incremental = time.perf_counter() - start
    digest = ("SELECT count(*) AS n, sum(l_orderkey) AS k, sum(l_linenumber) AS l, "
              "sum(revenue) AS r FROM mart.revenue")
    after_incremental = json.loads(basin(binary, home, "query", digest, "--format", "json"))
    start = time.perf_counter()
    basin(binary, home, "run", str(project), "--full-refresh")
    full = time.perf_counter() - start
    after_full = json.loads(basin(binary, home, "query", digest, "--format", "json"))
    return rows, incremental, full, after_incremental == after_full, after_full


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--basin", required=True)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--commits", type=int, default=50)
    p.add_argument("--data", default=str(Path.home() / ".cache" / "basin" / "bench-data"))
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="basin-incremental-"))
    try:
        home = work / "lake"
        home.mkdir()
        basin(args.basin, home, "init", str(home))
        latencies = commit_to_start(args.basin, home, work, args.commits)
        rows, incremental, full, equal, digest = incremental_vs_full(args.basin, home, work, args.scale, args.data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Machine: {machine()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print("| figure | value |\n|---|---:|")
    print(f"| commit -> function start, p50 [ms] ({len(latencies)} commits) | {statistics.median(latencies):.0f} |")
    print(f"| commit -> function start, p99 [ms] | {percentile(latencies, 99):.0f} |")
    print(f"| lineitem rows before the 1% append | {rows:,} |")
    print(f"| `basin run`, incremental after the append [s] | {incremental:.2f} |")
    print(f"| `basin run --full-refresh` [s] | {full:.2f} |")
    print(f"| full / incremental | {full / incremental:.1f}x |")
    print(f"| same table (count and sums) | {'yes' if equal else 'NO'} ({digest[0]['n']:,} rows) |")


if __name__ == "__main__":
    main()
