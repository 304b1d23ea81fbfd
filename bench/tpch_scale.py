"""TPC-H at a larger scale on one node, under a memory limit (issue #53, part 2): the 22
queries through one warm `basin serve` whose `[sql] memory_limit` (all queries) and
`query_memory_limit` (one query) are both --memory-limit, against DuckDB in-process with the
same memory limit over the very Parquet files of Basin's tables. For each query: both times
(best of --repeat), the server's peak resident memory while it ran (its VmHWM, reset before
each query through /proc/PID/clear_refs), and whether the answers are equal (the same rows in
the same order; numbers equal to 1e-9 of their size, as the answers test compares them).

    python bench/tpch_scale.py --basin target/release/basin --scale 10 [--memory-limit 4GiB]
    python bench/tpch_scale.py --basin target/release/basin --scale 10 --executors 2

With --executors N, the same on a cluster on this machine: a throwaway Postgres holds the
catalog, a folder all nodes share holds the warehouse (with --s3, a bucket of moto's S3
server, the one the tests use: slow, and its time is part of the figures), the `basin serve` runs Ballista's
scheduler and N `basin worker`s join it with executors, each node under the memory limit. The
figures say whether the cluster answers rightly and what its overhead is on one machine, not
how it scales: every node shares the same cores.

Prints one markdown table with the machine and the date; SF10's CSV files (about 11 GB) are
generated once into --data.
"""

import argparse
import datetime
import decimal
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb

import moto
import serving
from ingest_postgres import psql, start_postgres
from run import QUERIES, TABLES, basin, duckdb_views, generate, header, log


def gib(text: str) -> float:
    units = {"GiB": 1 << 30, "MiB": 1 << 20}
    for unit, size in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * size
    raise SystemExit(f"--memory-limit {text}: give it in GiB or MiB, e.g. 4GiB")


class Served:
    """One `basin serve` on a lakehouse: queries timed through its HTTP door, its peak RSS."""

    def __init__(self, binary: str, home: Path):
        self.proc, ports = serving.start(binary, home)
        self.http = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=3600)

    def post(self, sql: str, arrow: bool, cached: bool = False) -> tuple:
        """Seconds and answer; the query runs (`Cache-Control: no-cache`) unless `cached`, when
        the server's result cache may answer (then the answer's header says whether it did)."""
        accept = "application/vnd.apache.arrow.stream" if arrow else "application/json"
        body = json.dumps({"sql": sql, "namespace": "tpch"})
        headers = {"Content-Type": "application/json", "Accept": accept}
        if not cached:
            headers["Cache-Control"] = "no-cache"
        started = time.perf_counter()
        self.http.request("POST", "/api/v1/query", body=body, headers=headers)
        response = self.http.getresponse()
        answer = response.read()
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"basin serve answered {response.status}: {answer[:500]!r}")
        if cached and response.getheader("Basin-Result-Cache") != "hit":
            seconds = float("nan")
        return seconds, answer

    def cached(self, sql: str) -> float:
        """Seconds of the query answered from the result cache (NaN if it was not): asked once
        to fill it, then timed."""
        self.post(sql, arrow=True, cached=True)
        return self.post(sql, arrow=True, cached=True)[0]

    def engine(self, sql: str) -> str:
        """Where the script's query runs, as `EXPLAIN` says: `local`, `ballista ...`, or
        `local: WHY` when Ballista cannot take it."""
        code = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
        statements = [s.strip() for s in code.split(";") if s.strip()]
        query = next(s for s in statements if s.lower().startswith(("select", "with")))
        # q15's view, made for the script's query, is a common table expression to EXPLAIN.
        for view in statements[:statements.index(query)]:
            name, columns, body = re.match(r"create view (\w+)\s*(\([^)]*\))?\s*as(.*)", view, re.I | re.S).groups()
            query = f"WITH {name} {columns or ''} AS ({body}) {query}"
        self.http.request("POST", "/api/v1/query", body=json.dumps({"sql": "EXPLAIN " + query, "namespace": "tpch"}),
                          headers={"Content-Type": "application/json"})
        response = self.http.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            return f"EXPLAIN failed: {answer}"
        return next((r["plan"] for r in answer["rows"] if r["plan_type"] == "engine"), "?")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def reset_peak(pids: list) -> None:
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_bytes(pids: list) -> int:
    """The largest peak resident memory of the processes `pids` since `reset_peak`."""
    peaks = [0]
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) * 1024)
    return max(peaks)


def sql_toml(memory_limit: str, scheduler_port: int | None = None, options: list = (), s3_reads: int = 0,
             s3: str = "", query_timeout: str = "off", column_cache: str = "") -> str:
    text = (f'[s3]\nendpoint = "{s3}"\npath_style = true\nregion = "us-east-1"\n'
            'access_key_id = "bench"\nsecret_access_key = "bench"\n\n') if s3 else ""
    text += (f'[sql]\nmemory_limit = "{memory_limit}"\nquery_memory_limit = "{memory_limit}"\n'
             f'query_timeout = "{query_timeout}"\n')
    if s3_reads:
        text += f"s3_reads = {s3_reads}\n"
    if column_cache:
        text += f'column_cache = "{column_cache}"\n'
    if scheduler_port:
        text += 'engine = "ballista"\n'
    if options:
        pairs = [option.split("=", 1) for option in options]
        text += "\n[sql.datafusion]\n" + "".join(f'"{key}" = {value}\n' for key, value in pairs)
    if scheduler_port:
        text += f'\n[sql.ballista]\nscheduler = "127.0.0.1:{scheduler_port}"\n'
    return text


class Cluster:
    """--executors N on this machine: a throwaway Postgres for the catalog, a shared folder
    for the warehouse, `basin serve` (made by `start_lakehouse`) and N `basin worker`s."""

    def __init__(self, args, work: Path):
        self.args, self.work, self.workers = args, work, []
        os.chmod(work, 0o755)  # Postgres runs as nobody under root
        (work / "pg").mkdir()
        self.port, self.as_user, self.bindir = start_postgres(work / "pg")
        psql(self.port, "CREATE DATABASE tpch")
        self.catalog = f"postgres://postgres@127.0.0.1:{self.port}/tpch"
        self.moto, self.s3, endpoint = None, None, ""
        if args.s3:
            self.moto, endpoint, self.s3 = moto.start()
        self.warehouse = "s3://lake/tpch" if args.s3 else str(work / "shared")
        self.toml = sql_toml(args.memory_limit, moto.free_port(), args.set, args.s3_reads, endpoint, args.query_timeout)

    def init(self, binary: str, home: Path) -> None:
        (home / "basin.toml").write_text(self.toml)
        subprocess.run([binary, "init", str(home), "--catalog", self.catalog, "--warehouse", self.warehouse],
                       check=True, capture_output=True)

    def views(self, binary: str, home: Path, con) -> None:
        """DuckDB's views: over the lakehouse's files where they lie, or, in moto's bucket, over
        local copies of them (DuckDB reads them from the disk, the executors through moto)."""
        if not self.s3:
            return duckdb_views(binary, home, con)
        for table in TABLES:
            show = json.loads(basin(binary, home, "table", "show", f"tpch.{table}", "--format", "json").stdout)
            bucket, _, prefix = show["location"].removeprefix("s3://").partition("/")
            folder = self.work / "duck" / table
            folder.mkdir(parents=True)
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/data/"):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(".parquet"):
                        self.s3.download_file(bucket, obj["Key"], str(folder / obj["Key"].rsplit("/", 1)[1]))
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{folder}/*.parquet')")

    def join(self, binary: str, served: Served) -> None:
        for n in range(1, self.args.executors + 1):
            node = self.work / f"worker{n}"
            node.mkdir()
            (node / "basin.toml").write_text(self.toml)
            self.workers.append(subprocess.Popen(
                [binary, "--home", str(node), "worker", "--join", self.catalog, "--listen", "127.0.0.1:0", "--no-auth"],
                stdout=subprocess.DEVNULL, stderr=open(self.work / f"worker{n}.log", "w"),
                env={"RUST_LOG": "warn", "PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"],
                     "BASIN_NODE_NAME": f"worker{n}"}))
        deadline = time.monotonic() + 120
        while not served.engine("SELECT count(*) FROM lineitem").startswith("ballista"):
            if time.monotonic() > deadline:
                raise SystemExit(f"no executor joined: {served.engine('SELECT count(*) FROM lineitem')}")
            time.sleep(1)
        log(f"   {self.args.executors} executors joined")

    def tasks(self) -> float:
        """The tasks every executor has run so far (`basin_sql_executor_tasks_total`)."""
        total = 0.0
        for n in range(1, self.args.executors + 1):
            url = re.search(r"/metrics on (http://[0-9.:]+)", (self.work / f"worker{n}.log").read_text()).group(1)
            with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
                text = response.read().decode()
            total += float(re.search(r"^basin_sql_executor_tasks_total (\S+)$", text, re.M).group(1))
        return total

    def stop(self) -> None:
        for proc in self.workers:
            proc.terminate()
            proc.wait(timeout=60)
        # Reads the store failed (opendal's `io timeout reached`, mostly) and sent again.
        self.retries = sum((self.work / f"worker{n}.log").read_text().count("will retry")
                           for n in range(1, len(self.workers) + 1))
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.work / "pg" / "data"),
                        "-m", "immediate", "stop"], capture_output=True)
        if self.moto:
            self.moto.kill()
            self.moto.wait()


def cell(value):
    """A value of either engine in one form: numbers as floats, the rest as text."""
    if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-5 + 1e-9 * abs(b)
    return a == b


def answers_differ(basin_rows: list, duck_rows: list) -> str:
    """'' when equal, else the first difference."""
    if len(basin_rows) != len(duck_rows):
        return f"{len(basin_rows)} rows, DuckDB {len(duck_rows)}"
    for i, (a, b) in enumerate(zip(basin_rows, duck_rows)):
        if len(a) != len(b) or not all(same(x, y) for x, y in zip(a, b)):
            return f"row {i}: {a} != {b}"
    return ""


def duckdb_run(con, sql: str, repeat: int) -> tuple:
    """DuckDB's best time for a query script, and its query's rows."""
    statements = [s for s in sql.split(";") if s.strip()]
    best, rows = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        for s in statements:
            result = con.execute(s).fetchall()
            # A script's answer is its query's (q15 creates and drops a view around it).
            code = " ".join(line for line in s.splitlines() if not line.strip().startswith("--"))
            if code.strip().lower().startswith(("select", "with")):
                rows = result
        best = min(best, time.perf_counter() - started)
    return best, [[cell(v) for v in row] for row in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--basin", required=True, help="the release basin binary")
    p.add_argument("--scale", type=float, default=10)
    p.add_argument("--memory-limit", default="4GiB")
    p.add_argument("--repeat", type=int, default=1, help="runs per query (best is kept)")
    p.add_argument("--data", default=str(Path.home() / ".cache" / "basin" / "bench-data"))
    p.add_argument("--executors", type=int, default=0,
                   help="run on a cluster of this many `basin worker` executors (0: one `basin serve`)")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="a DataFusion option for Basin's [sql.datafusion], e.g. execution.batch_size=16384 "
                        "(an A/B: run once with, once without, on one --lakehouse)")
    p.add_argument("--lakehouse", type=Path,
                   help="keep the imported tables in this folder and use them again when it holds them "
                        "(one node only)")
    p.add_argument("--s3", action="store_true", help="with --executors: the warehouse in moto's S3 server")
    p.add_argument("--s3-reads", type=int, default=0, help="`[sql] s3_reads` on every node (0: Basin's default)")
    p.add_argument("--queries", default="1-22", help="which of the 22, e.g. 1,6,14 (default: all)")
    p.add_argument("--query-timeout", default="off", help="`[sql] query_timeout` on every node, e.g. 10m")
    p.add_argument("--column-cache", default="",
                   help="`[sql] column_cache` of the server, e.g. 0 to read every scan from its files "
                        "(default: Basin's)")
    args = p.parse_args()
    args.queries = [q for part in args.queries.split(",") for q in
                    (range(int(part.split("-")[0]), int(part.split("-")[1]) + 1) if "-" in part else [int(part)])]
    if args.s3 and not args.executors:
        raise SystemExit("--s3 is for a cluster (--executors N)")
    if args.lakehouse and args.executors:
        raise SystemExit("--lakehouse keeps one node's lakehouse; a cluster's catalog lives as long as its run")
    limit = gib(args.memory_limit)
    work = Path(tempfile.mkdtemp(prefix="basin-tpch-"))
    home = args.lakehouse.absolute() if args.lakehouse else work / "lh"
    reused = (home / ".basin").is_dir()
    # A kept lakehouse holds the tables already (DuckDB reads their Parquet files).
    csv_dir = None if reused else generate(args.scale, Path(args.data))
    home.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(args, work) if args.executors else None
    try:
        if cluster:
            cluster.init(args.basin, home)
        elif not reused:
            subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)
        if not cluster:
            (home / "basin.toml").write_text(sql_toml(args.memory_limit, options=args.set,
                                                     query_timeout=args.query_timeout,
                                                     column_cache=args.column_cache))
        imported = 0.0
        for table in TABLES if not reused else []:
            started = time.perf_counter()
            basin(args.basin, home, "import", str(csv_dir / f"{table}.csv"), "--table", f"tpch.{table}")
            seconds = time.perf_counter() - started
            imported += seconds
            log(f"   imported {table} in {seconds:.1f}s")
        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{int(limit) >> 20}MiB'")
        con.execute(f"SET temp_directory = '{work / 'duckdb-spill'}'")
        (cluster.views if cluster else duckdb_views)(args.basin, home, con)
        served = Served(args.basin, home)
        rows = []
        try:
            if cluster:
                cluster.join(args.basin, served)
            pids = [served.proc.pid, *(w.pid for w in cluster.workers)] if cluster else [served.proc.pid]
            for q in args.queries:
                sql = (QUERIES / f"q{q:02}.sql").read_text()
                reset_peak(pids)
                tasks = cluster.tasks() if cluster else 0
                try:
                    times = [served.post(sql, arrow=True)[0] for _ in range(args.repeat)]
                    first_b, best_b = times[0], min(times)
                    answer = json.loads(served.post(sql, arrow=False)[1])
                    hit = served.cached(sql)
                    basin_rows = [[cell(v) for v in row.values()] for row in answer["rows"]]
                except RuntimeError as e:
                    # A query over --query-timeout (or failing otherwise) is marked, not fatal.
                    best_b, basin_rows, failed = float("nan"), None, f"failed: {str(e)[:160]}"
                    first_b = float("nan")
                    hit = float("nan")
                peak = peak_bytes(pids)
                # Where it ran: on the executors if they ran tasks for it, else here, and why.
                engine = "local"
                if cluster:
                    tasks = cluster.tasks() - tasks
                    engine = f"ballista ({tasks:.0f} tasks)" if tasks else served.engine(sql)
                best_d, duck_rows = duckdb_run(con, sql, args.repeat)
                differ = failed if basin_rows is None else answers_differ(basin_rows, duck_rows)
                rows.append((q, best_b, best_d, peak, differ, engine, hit, first_b))
                log(f"   q{q:02}: basin {best_b:.2f}s (cached {hit * 1000:.1f} ms) duckdb {best_d:.2f}s peak {peak / 2**30:.2f} GiB [{engine[:50]}]"
                    f"{' DIFFERENT: ' + differ if differ else ''}")
        finally:
            served.stop()
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    header(argparse.Namespace(scale=args.scale, repeat=args.repeat), tpch=True)
    where = (f"a cluster on this machine: `basin serve` (Ballista's scheduler) and {args.executors} `basin worker` "
             "executors, a Postgres catalog, the warehouse a folder they share; peak RSS is the largest node's. "
             if cluster else "")
    if cluster:
        where += f"The executors retried {cluster.retries} reads of the store. "
    settings = f"`[sql.datafusion]` {', '.join(args.set)}; " if args.set else ""
    settings += f"`[sql] s3_reads = {args.s3_reads}`; " if args.s3_reads else ""
    settings += f"`[sql] column_cache = {args.column_cache}`; " if args.column_cache else ""
    where = where.replace("a folder they share", "a bucket of moto's S3 server") if args.s3 else where
    tables = f"all 8 tables imported in {imported:.0f} s" if not reused else f"the tables imported before into {home}"
    print(f"{where}{settings}Memory limit: {args.memory_limit} for Basin (`[sql] memory_limit`, `query_memory_limit`"
          f"{', on every node' if cluster else ''}) and DuckDB (`SET memory_limit`); {tables}  ")
    print("Basin's times are the query run (`Cache-Control: no-cache`), best of the runs and the *first* run "
          "(which reads its columns from the files; later runs find them kept, `[sql] column_cache`); *cached* is "
          "the same query answered from the result cache (`[sql] result_cache`) on its third ask.  ")
    print()
    print(f"| query | Basin {'on Ballista' if cluster else 'serve'} [s] | DuckDB [s] | Basin / DuckDB | peak RSS [GiB] "
          f"|{' where it ran |' if cluster else ''} answers | cached [ms] | first [s] |")
    print(f"| --- | ---: | ---: | ---: | ---: |{' --- |' if cluster else ''} --- | ---: | ---: |")
    for q, b, d, peak, differ, engine, hit, first in rows:
        ran = f" {engine} |" if cluster else ""
        print(f"| q{q:02} | {b:.2f} | {d:.2f} | {b / d:.2f}x | {peak / 2**30:.2f} |{ran} {differ or 'equal'} "
              f"| {hit * 1000:.1f} | {first:.2f} |")
    total_b = sum(r[1] for r in rows)
    total_d = sum(r[2] for r in rows)
    equal = sum(1 for r in rows if not r[4])
    on_cluster = sum(1 for r in rows if r[5].startswith("ballista"))
    ran = f" {on_cluster} of {len(rows)} on Ballista |" if cluster else ""
    total_hit = sum(r[6] for r in rows)
    print(f"| **total** | **{total_b:.2f}** | **{total_d:.2f}** | **{total_b / total_d:.2f}x** | "
          f"{max(r[3] for r in rows) / 2**30:.2f} |{ran} {equal} of {len(rows)} equal | {total_hit * 1000:.1f} "
          f"| {sum(r[7] for r in rows):.2f} |")


if __name__ == "__main__":
    os.environ.setdefault("RUST_LOG", "warn")
    main()
