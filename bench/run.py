"""Basin's benchmarks, printed as one markdown table with the machine and the date.

Figures (all from one run, on this machine):
  - TPC-H (tpchgen-cli data at --scale): the 22 queries in Basin and in DuckDB over the same
    Parquet files (the data files of Basin's Iceberg tables), best of --repeat runs each;
    Basin both as `basin query` (a new process per query) and through a warm `basin serve`
    (HTTP, Arrow answers), as DuckDB runs in one warm connection;
  - the lineitem CSV import in Basin vs DuckDB's COPY ... TO parquet;
  - catalog latency with 1,000 tables: branch create and a one-table commit;
  - the function runtime (environment with pyarrow and pandas): environment resolve on a cache
    hit, invoke -> first line of user code on a new and on a warm worker, a no-op invocation's
    round trip (and one in an environment without packages), and a 1 GiB table handed
    Basin -> Python -> Basin through shared memory;
  - the pipeline loop (bench/pipeline: Python -> SQL -> SQL over lineitem at --scale): the
    first run, a fully cached re-run, and `basin run` after editing the last or the first model;
  - pipeline vs a plain script (bench/pipeline_vs_script): the same pyarrow transform over
    lineitem as a one-model `basin run` (cached environment) and as a Python script reading
    the table's Parquet files, best of --repeat each;
  - a small query through each front door: `basin query`, HTTP, Postgres wire
    (bench/front_doors.py);
  - triggered functions: 10,000 small CSV files dropped into a bucket at once, landing ->
    handler latency, and an idle server's CPU (bench/events.py).
"""

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

import events
import front_doors
import serving

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "tests" / "data" / "tpch" / "queries"
TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem_gb:.0f} GiB, {platform.system()} {platform.machine()}"


def generate(scale: float, out: Path) -> Path:
    csv_dir = out / f"sf{scale:g}"
    if not (csv_dir / "lineitem.csv").exists():
        csv_dir.mkdir(parents=True, exist_ok=True)
        log(f"== generating TPC-H scale {scale:g} with tpchgen-cli")
        tpchgen = Path(sys.executable).parent / "tpchgen-cli"
        subprocess.run([str(tpchgen), "csv", "-s", f"{scale:g}", "-o", str(csv_dir)], check=True)
    return csv_dir


def basin(binary: str, home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([binary, "--home", str(home), *args], capture_output=True, text=True, input=stdin)
    if proc.returncode != 0:
        raise RuntimeError(f"basin {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def engine_seconds(stderr: str) -> float:
    m = re.search(r"\((\d+) rows?, ([0-9.]+)s\)", stderr)
    if not m:
        raise RuntimeError(f"no timing in basin output: {stderr}")
    return float(m.group(2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--basin", required=True, help="the release basin binary")
    p.add_argument("--catalog-latency", required=True, help="the catalog_latency example binary")
    p.add_argument("--runtime-bench", required=True, help="the runtime_bench example binary")
    p.add_argument("--skip-tpch", action="store_true", help="only the catalog, runtime and pipeline figures")
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--only-front-doors", action="store_true", help="only the query latency through each front door")
    p.add_argument("--only-events", action="store_true", help="only the triggered-function figures")
    p.add_argument("--only-tpch", action="store_true", help="only the import and TPC-H figures")
    p.add_argument("--only-pipeline", action="store_true",
                   help="only the pipeline figures (the edit loop, and pipeline vs script)")
    p.add_argument("--event-files", type=int, default=10_000, help="files in the burst of --only-events")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=3, help="runs per query (best is kept)")
    p.add_argument("--data", default=str(Path.home() / ".cache" / "basin" / "bench-data"))
    p.add_argument("--skip-queries", action="store_true")
    args = p.parse_args()

    rows = []  # (figure, basin, duckdb, ratio or note)
    work = Path(tempfile.mkdtemp(prefix="basin-bench-"))
    if args.only_events:
        figures = events.measure(args.basin, work, files=args.event_files)
        header(args, tpch=False)
        table("triggered functions", figures)
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.only_tpch:
        tpch(args, rows, work)
        header(args)
        print_rows(rows)
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.only_pipeline:
        figures = pipeline_loop(args, work)
        header(args, tpch=False)
        table("pipelines", figures)
        shutil.rmtree(work, ignore_errors=True)
        return
    doors = front_door_rows(args, work)
    if args.only_front_doors:
        header(args)
        table("front door (small query)", [(n, v, "") for n, v in doors])
        return
    if not args.skip_tpch:
        tpch(args, rows, work)

    latency = json.loads(subprocess.run([args.catalog_latency, "1000", "200"], check=True, capture_output=True,
                                        text=True).stdout)
    rows.append(("branch create, 1,000 tables, p50 [ms]", latency["branch_create"]["p50_ms"], None, None))
    rows.append(("branch create, 1,000 tables, p95 [ms]", latency["branch_create"]["p95_ms"], None, None))
    rows.append(("one-table commit, 1,000 tables, p50 [ms]", latency["commit"]["p50_ms"], None, None))
    rows.append(("one-table commit, 1,000 tables, p95 [ms]", latency["commit"]["p95_ms"], None, None))

    log("== function runtime")
    # 50 samples, a 1 GiB table, a 4 GiB pool, five handoffs a second apart.
    rt = json.loads(subprocess.run([args.runtime_bench, "50", "1024", "4096", "5", "1000"], check=True,
                                   capture_output=True, text=True).stdout)
    runtime_rows = [
        ("environment resolve, cache hit, p50 [ms]", rt["env_resolve_cache_hit"]["p50_ms"], "20"),
        ("invoke -> first line, warm worker (fork), p50 [ms]", rt["first_line_warm_worker"]["p50_ms"], "10"),
        ("invoke -> first line, warm worker (fork), p95 [ms]", rt["first_line_warm_worker"]["p95_ms"], ""),
        ("invoke -> first line, new worker, p50 [ms]", rt["first_line_new_worker"]["p50_ms"], ""),
        ("invoke -> first line, new worker, p95 [ms]", rt["first_line_new_worker"]["p95_ms"], ""),
        ("no-op invocation round trip, kept process (reuse on), p50 [ms]", rt["round_trip_kept"]["p50_ms"], "0.5"),
        ("no-op invocation round trip, kept process (reuse on), p95 [ms]", rt["round_trip_kept"]["p95_ms"], ""),
        ("  the same, an environment without packages, p50 [ms]", rt["round_trip_kept_bare"]["p50_ms"], ""),
        ("no-op invocation round trip, fresh child (reuse off), p50 [ms]", rt["round_trip_warm"]["p50_ms"], ""),
        ("no-op invocation round trip, fresh child (reuse off), p95 [ms]", rt["round_trip_warm"]["p95_ms"], ""),
        ("  the same, an environment without packages, p50 [ms]", rt["round_trip_warm_bare"]["p50_ms"], ""),
        ("1 GiB table Basin -> Python -> Basin, returned unchanged [GB/s]", rt["handoff"]["best"]["gb_per_second"], "4"),
        ("  of which Basin writing the input [s]", rt["handoff"]["best"]["write_input_seconds"], ""),
        ("  in all [s]", rt["handoff"]["best"]["seconds"], ""),
        ("  the slowest of the handoffs after the first [GB/s]", rt["handoff"]["slowest_warm"]["gb_per_second"], ""),
    ]

    pipeline_rows = [] if args.skip_pipeline else pipeline_loop(args, work)

    header(args)
    print_rows(rows)
    print()
    table("function runtime", runtime_rows + pipeline_rows)
    print()
    table("front door (small query)", [(n, v, "") for n, v in doors])
    print()
    table("triggered functions", events.measure(args.basin, work))
    print()
    import http_function  # imports this module's `machine`

    table("HTTP function (no-op), through basin serve", [
        (f"round trip, reuse {'on (kept process)' if reuse else 'off (fresh child)'}, {q} [ms]", v, "2" if reuse and q == "p50" else "")
        for reuse, p50, p95, _ in http_function.measure(args.basin, work)
        for q, v in (("p50", p50), ("p95", p95))
    ])
    shutil.rmtree(work, ignore_errors=True)


def print_rows(rows: list) -> None:
    """The Basin vs DuckDB table."""
    print("| figure | Basin | DuckDB | Basin / DuckDB |")
    print("| --- | ---: | ---: | ---: |")
    for name, b, d, r in rows:
        fmt = lambda v: "" if v is None else f"{v:.3f}"
        print(f"| {name} | {fmt(b)} | {fmt(d)} | {'' if r is None else f'{r:.2f}x'} |")


def header(args, tpch: bool = True) -> None:
    print(f"Machine: {machine()}  ")
    print(f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}  ")
    if tpch:
        print(f"Scale factor: {args.scale:g}; DuckDB {duckdb.__version__}; best of {args.repeat} runs per query  ")
    print()


def table(title: str, rows: list) -> None:
    print(f"| {title} | Basin | target |")
    print("| --- | ---: | ---: |")
    for name, value, target in rows:
        print(f"| {name} | {value:.3f} | {target} |")


def lakehouse_with(args, work: Path, name: str, table: str) -> Path:
    """A new lakehouse `work/name` holding TPC-H `table` (at --scale) as tpch.TABLE."""
    csv_dir = generate(args.scale, Path(args.data))
    home = work / name
    home.mkdir()
    subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)
    basin(args.basin, home, "import", str(csv_dir / f"{table}.csv"), "--table", f"tpch.{table}")
    return home


def front_door_rows(args, work: Path) -> list:
    """A small query through `basin query`, HTTP and the Postgres wire protocol."""
    log("== front doors")
    return front_doors.measure(args.basin, lakehouse_with(args, work, "doors", "nation"))


def pipeline_loop(args, work: Path) -> list:
    """The edit -> result loop of bench/pipeline over lineitem (wall time of `basin run`)."""
    log("== pipeline loop")
    home = lakehouse_with(args, work, "loop", "lineitem")
    project = work / "loop-project"
    shutil.copytree(ROOT / "bench" / "pipeline", project)

    def run() -> float:
        started = time.perf_counter()
        proc = basin(args.basin, home, "run", str(project), "--format", "json")
        record = json.loads(proc.stdout)
        assert record["status"] == "succeeded", record
        return time.perf_counter() - started

    first = run()  # builds the environment on a fresh lakehouse
    log(f"   first run {first:.2f}s")
    cached = min(run() for _ in range(3))
    edits_last, edits_first = [], []
    for i in range(3):
        sql = project / "monthly_revenue.sql"
        sql.write_text(sql.read_text().rstrip() + f" -- edit {i}\n")
        edits_last.append(run())
        py = project / "line_revenue.py"
        py.write_text(py.read_text() + f"# edit {i}\n")
        edits_first.append(run())
    rows = [
        ("pipeline: first run, environment built [s]", first, ""),
        ("pipeline: re-run, nothing changed (all cached) [s]", cached, ""),
        ("pipeline: re-run after editing the last model (SQL) [s]", min(edits_last), "1"),
        ("pipeline: re-run after editing the first model (Python) [s]", min(edits_first), "1"),
    ]
    return rows + pipeline_vs_script(args, work, home)


def pipeline_vs_script(args, work: Path, home: Path) -> list:
    """The same pyarrow transform as a Basin pipeline and as a plain script (issue #18, item 5).

    Both are timed from the command to its end, best of --repeat, with a warm page cache:
    `basin run --no-cache` (the environment is cached, the model runs every time, its input is
    read through Basin's scan with the columns and the filter pushed down, its output merged
    into main) against the environment's own Python running bench/pipeline_vs_script/script.py
    over the Parquet files of the same Iceberg table (pyarrow.dataset, the same pushdown)."""
    log("== pipeline vs script")
    project = work / "vs-project"
    shutil.copytree(ROOT / "bench" / "pipeline_vs_script", project)

    def timed(*cmd) -> tuple[float, subprocess.CompletedProcess]:
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr}")
        return elapsed, proc

    # The pipeline's environment: Python 3.11 and the pyarrow Basin adds to every function's
    # (basin_service::PYARROW).
    env = json.loads(basin(args.basin, home, "env", "build", "--python", "3.11", "--pip", "pyarrow==26.0.1",
                           "--format", "json").stdout)
    python = env["python"]
    warehouse = home / ".basin" / "warehouse"
    files = sorted(str(f) for f in (warehouse / "tpch").glob("lineitem-*/data/**/*.parquet"))
    if not files:
        sys.exit(f"no Parquet files of tpch.lineitem under {warehouse}")
    pipeline, script = [], []
    for _ in range(args.repeat + 1):  # the first of each warms the caches and is dropped
        seconds, proc = timed(args.basin, "--home", str(home), "run", str(project), "--no-cache", "--format", "json")
        assert json.loads(proc.stdout)["status"] == "succeeded", proc.stdout
        pipeline.append(seconds)
        seconds, _ = timed(python, str(project / "script.py"), str(work / "vs-script.parquet"), *files)
        script.append(seconds)
    # Both computed the same answer (the sums up to floating-point order).
    ours = json.loads(basin(args.basin, home, "query", "SELECT * FROM vs.pricing_summary ORDER BY 1, 2",
                            "--format", "json").stdout)
    theirs = duckdb.sql(f"SELECT * FROM '{work / 'vs-script.parquet'}' ORDER BY 1, 2").fetchall()
    assert len(ours) == len(theirs) == 4, (ours, theirs)
    for a, b in zip(ours, theirs):
        assert (a["l_returnflag"], a["l_linestatus"], a["quantity_count"]) == (b[0], b[1], b[4]), (a, b)
        assert abs(a["revenue_sum"] - b[3]) <= 1e-9 * abs(b[3]), (a, b)
    best_pipeline, best_script = min(pipeline[1:]), min(script[1:])
    log(f"   pipeline {best_pipeline:.3f}s, script {best_script:.3f}s")
    return [
        ("pipeline vs script: `basin run` (pyarrow model over lineitem) [s]", best_pipeline, ""),
        ("pipeline vs script: the same transform as a Python script [s]", best_script, ""),
        ("pipeline vs script: Basin / script", best_pipeline / best_script, "1.0"),
    ]


def duckdb_views(binary: str, home: Path, con) -> None:
    """Views in `con` over the very Parquet files of the lakehouse's TPC-H tables (every file
    in each table's data folder: a lakehouse whose tables were written once)."""
    for table in TABLES:
        show = json.loads(basin(binary, home, "table", "show", f"tpch.{table}", "--format", "json").stdout)
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{show['location']}/data/*.parquet')")


def duckdb_seconds(con, sql: str, repeat: int) -> float:
    """DuckDB's best time for a query script, in-process, results fetched."""
    statements = [s for s in sql.split(";") if s.strip()]
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for s in statements:
            con.execute(s).fetchall()
        best = min(best, time.perf_counter() - started)
    return best


def tpch(args, rows: list, work: Path) -> None:
    csv_dir = generate(args.scale, Path(args.data))
    home = work / "lh"
    home.mkdir()
    subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)

    # Import every table; lineitem is the timed figure.
    import_seconds = {}
    for table in TABLES:
        src = csv_dir / f"{table}.csv"
        started = time.perf_counter()
        basin(args.basin, home, "import", str(src), "--table", f"tpch.{table}")
        import_seconds[table] = time.perf_counter() - started
        log(f"   imported {table} in {import_seconds[table]:.2f}s")
    # The lineitem figure: best of --repeat runs each, both reading a CSV already in the page
    # cache (Basin into fresh tables, DuckDB into a fresh Parquet file).
    lineitem_csv = csv_dir / "lineitem.csv"
    size_mb = lineitem_csv.stat().st_size / 1e6
    basin_import = import_seconds["lineitem"]
    for i in range(1, args.repeat):
        started = time.perf_counter()
        basin(args.basin, home, "import", str(lineitem_csv), "--table", f"scratch.lineitem{i}")
        basin_import = min(basin_import, time.perf_counter() - started)
    con = duckdb.connect()
    duck_import = float("inf")
    for i in range(args.repeat):
        started = time.perf_counter()
        con.execute(
            f"COPY (SELECT * FROM read_csv('{lineitem_csv}', header=true)) "
            f"TO '{work / f'lineitem{i}.parquet'}' (FORMAT parquet)"
        )
        duck_import = min(duck_import, time.perf_counter() - started)
    rows.append((f"lineitem CSV import ({size_mb:.0f} MB) [s]", basin_import, duck_import, basin_import / duck_import))

    if not args.skip_queries:
        duckdb_views(args.basin, home, con)
        total_b = total_d = total_s = 0.0
        highest = (0.0, "")
        with warm_server(args.basin, home) as served:
            for q in range(1, 23):
                sql = (QUERIES / f"q{q:02}.sql").read_text()
                best_b = min(
                    engine_seconds(basin(args.basin, home, "query", "-", "-n", "tpch", "--format", "csv",
                                         stdin=sql).stderr)
                    for _ in range(args.repeat)
                )
                best_d = duckdb_seconds(con, sql, args.repeat)
                best_s = min(served(sql) for _ in range(args.repeat))
                total_b += best_b
                total_d += best_d
                total_s += best_s
                highest = max(highest, (best_s / best_d, f"q{q:02}"))
                rows.append((f"TPC-H q{q:02} [s]", best_b, best_d, best_b / best_d))
                log(f"   q{q:02}: basin {best_b:.3f}s duckdb {best_d:.3f}s basin serve {best_s:.3f}s")
        rows.append(("TPC-H total, 22 queries [s]", total_b, total_d, total_b / total_d))
        rows.append(("TPC-H total through `basin serve` (HTTP, Arrow) [s]", total_s, total_d, total_s / total_d))
        rows.append((f"the highest query through `basin serve`: {highest[1]}", None, None, highest[0]))


@contextlib.contextmanager
def warm_server(binary: str, home: Path):
    """A `basin serve` on `home`, and a function that times one query script through its HTTP
    door (an Arrow answer, read whole) from the request to the answer's last byte: a warm
    process, as DuckDB's connection is, where `basin query` starts a new process per query."""
    proc, ports = serving.start(binary, home)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", ports["http"])

        def served(sql: str) -> float:
            body = json.dumps({"sql": sql, "namespace": "tpch"})
            started = time.perf_counter()
            connection.request("POST", "/api/v1/query", body=body,
                               headers={"Content-Type": "application/json", "Cache-Control": "no-cache",
                                        "Accept": "application/vnd.apache.arrow.stream"})
            response = connection.getresponse()
            answer = response.read()
            seconds = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"basin serve answered {response.status}: {answer[:500]!r}")
            return seconds

        yield served
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
