"""A/B runs of the TPC-H levers of issue #18, on one machine, in one sitting.

Builds lakehouses from the same TPC-H CSV files: one written as Basin writes now (row groups
of 128k rows, Snappy) and others whose tables carry write properties (Parquet's old
one-million-row groups, other codecs), created through Basin's Iceberg REST catalog with those
properties before the data is imported. Then runs the 22 queries on each variant below (a
lakehouse and a basin.toml with `[sql.datafusion]` options), best of --repeat per query, and
prints one markdown table of totals and one of per-query times; with --duckdb, DuckDB's times
on each lakehouse's files beside them. Run by `bench/run.sh --tpch-ab` (release build).

With --binaries A=PATH,B=PATH (build levers: an allocator, LTO), it runs Basin's default
settings on the 128k lakehouse with each binary in turn, --rounds times (A, B, A, B, ...), so
that this VM's drift hits both alike, and prints each round's totals and the best per query.
--env NAME=KEY=VALUE (repeatable) sets an environment variable for one of them, so that one
binary runs under two settings of the process (an allocator's option, say):
`--binaries thp=B,nothp=B --env nothp=MIMALLOC_ALLOW_THP=0`.
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from unittest import mock

import duckdb

from run import QUERIES, TABLES, basin, duckdb_seconds, duckdb_views, engine_seconds, generate, header, log
import serving

# The lakehouses: the table properties each writes under (none: Basin's defaults).
LAKEHOUSES = {
    "128k": {},
    "1M": {"write.parquet.row-group-limit": "1048576"},
    "lz4_raw": {"write.parquet.compression-codec": "lz4_raw"},
    "zstd": {"write.parquet.compression-codec": "zstd", "write.parquet.compression-level": "1"},
    "uncompressed": {"write.parquet.compression-codec": "uncompressed"},
}

# (name, lakehouse: a key of LAKEHOUSES, [sql.datafusion] options)
NO_VIEWS = {"execution.parquet.schema_force_view_types": False}

VARIANTS = [
    ("row groups of 1M rows (before)", "1M", {}),
    ("row groups of 128k rows", "128k", {}),
    ("128k, strings as Utf8 instead of views", "128k", NO_VIEWS),
    ("128k, repartition_file_min_size 1 MiB", "128k", {"optimizer.repartition_file_min_size": 1 << 20}),
    ("128k, hash_join_single_partition_threshold 8 MiB / 1M rows", "128k", {
        "optimizer.hash_join_single_partition_threshold": 8 << 20,
        "optimizer.hash_join_single_partition_threshold_rows": 1 << 20}),
    ("128k, perfect_hash_join_small_build_threshold 1M", "128k", {
        "execution.perfect_hash_join_small_build_threshold": 1 << 20}),
    ("128k, join dynamic filter pushdown off", "128k", {"optimizer.enable_join_dynamic_filter_pushdown": False}),
    ("1M, hash_join_single_partition_threshold 8 MiB / 1M rows", "1M", {
        "optimizer.hash_join_single_partition_threshold": 8 << 20,
        "optimizer.hash_join_single_partition_threshold_rows": 1 << 20}),
    # Basin's defaults from here on: the thresholds above (8 MiB / 1M until 2026-11-24, 32 MiB / 2M
    # since: the variant below) are in DATAFUSION_DEFAULTS.
    ("128k, partial aggregation skipped past 10% distinct groups", "128k", {
        "execution.skip_partial_aggregation_probe_ratio_threshold": 0.1}),
    ("128k, batches of 16k rows", "128k", {"execution.batch_size": 16384}),
    ("128k, 4 target partitions on 2 cores", "128k", {"execution.target_partitions": 4}),
    ("128k, LZ4 (raw) instead of Snappy", "lz4_raw", {}),
    ("128k, zstd level 1 instead of Snappy", "zstd", {}),
    ("128k, uncompressed", "uncompressed", {}),
    ("128k, filter selectivity guessed at 10% instead of 20%", "128k", {"optimizer.default_filter_selectivity": 10}),
    ("128k, no repartitioned joins (every join built once)", "128k", {"optimizer.repartition_joins": False}),
    ("128k, hash_join_single_partition_threshold 32 MiB / 2M rows", "128k", {
        "optimizer.hash_join_single_partition_threshold": 32 << 20,
        "optimizer.hash_join_single_partition_threshold_rows": 2 << 20}),
    ("128k, hash_join_single_partition_threshold 64 MiB / 4M rows", "128k", {
        "optimizer.hash_join_single_partition_threshold": 64 << 20,
        "optimizer.hash_join_single_partition_threshold_rows": 4 << 20}),
    # Basin's default from 2026-11-25: keys spanning up to 1M values join by array; 8M since
    # that evening (docs/benchmarks/sql.md, "Joins by array up to 8M key values").
    ("128k, perfect hash joins only below 1,024 values (DataFusion's default)", "128k", {
        "execution.perfect_hash_join_small_build_threshold": 1024}),
    ("128k, perfect hash joins only below 1M values (Basin's before 8M)", "128k", {
        "execution.perfect_hash_join_small_build_threshold": 1 << 20}),
]


def toml_value(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def build(args, csv_dir: Path, home: Path, properties: dict, like: Path | None = None) -> None:
    """A lakehouse of the TPC-H tables. With `properties`, each table is first created through
    the Iceberg REST catalog (as any engine would), with the schema the same table has in
    `like` and those properties, and the rows imported into it: the data folders hold only
    files written under the properties, which DuckDB's views read."""
    subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)
    if properties:
        schemas = {}
        with serving_rest(args, like) as base:
            for table in TABLES:
                with urllib.request.urlopen(f"{base}/v1/main/namespaces/tpch/tables/{table}") as r:
                    metadata = json.load(r)["metadata"]
                schemas[table] = next(s for s in metadata["schemas"]
                                      if s["schema-id"] == metadata["current-schema-id"])
        with serving_rest(args, home) as base:
            post(f"{base}/v1/main/namespaces", {"namespace": ["tpch"]})
            for table in TABLES:
                post(f"{base}/v1/main/namespaces/tpch/tables",
                     {"name": table, "schema": schemas[table], "properties": properties})
    for table in TABLES:
        basin(args.basin, home, "import", str(csv_dir / f"{table}.csv"), "--table", f"tpch.{table}")


@contextlib.contextmanager
def serving_rest(args, home: Path):
    """`basin serve` on `home` (no auth, a local port) for as long as the block runs."""
    server = subprocess.Popen([args.basin, "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--no-auth"],
                              stderr=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{serving.listening(server)['http']}"
    finally:
        server.kill()
        server.wait()


def post(url: str, body: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(request).read()


def run_queries(args, home: Path) -> list[float | None]:
    """Best time per query; None for a query that failed (its first error line is logged)."""
    seconds = []
    for q in range(1, 23):
        sql = (QUERIES / f"q{q:02}.sql").read_text()
        try:
            seconds.append(min(
                engine_seconds(basin(args.basin, home, "query", "-", "-n", "tpch", "--format", "csv",
                                     stdin=sql).stderr)
                for _ in range(args.repeat)
            ))
        except RuntimeError as e:
            log(f"   q{q:02} failed: {str(e).splitlines()[1][:160]}")
            seconds.append(None)
    return seconds


def total(seconds: list[float | None]) -> str:
    """The sum of the queries that ran (marked when some failed)."""
    ran = [s for s in seconds if s is not None]
    return f"{sum(ran):.3f}" + ("" if len(ran) == len(seconds) else f" ({len(ran)} of {len(seconds)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--basin", required=True, help="the release basin binary")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data", default=str(Path.home() / ".cache" / "basin" / "bench-data"))
    p.add_argument("--only", default="", help="comma-separated variant numbers to run (default: all)")
    p.add_argument("--memory", default="4GiB", help="[sql] memory_limit and query_memory_limit of the runs")
    p.add_argument("--binaries", default="", help="NAME=PATH,NAME=PATH: compare binaries instead of variants")
    p.add_argument("--rounds", type=int, default=3, help="rounds of --binaries (each runs every binary once)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=KEY=VALUE",
                   help="an environment variable for the runs of one of --binaries (repeatable)")
    p.add_argument("--duckdb", action="store_true", help="also run DuckDB on each variant's lakehouse files")
    args = p.parse_args()
    if args.binaries:
        compare_binaries(args)
        return
    csv_dir = generate(args.scale, Path(args.data))
    work = Path(tempfile.mkdtemp(prefix="basin-ab-"))
    chosen = [VARIANTS[int(i)] for i in args.only.split(",")] if args.only else VARIANTS
    # The default lakehouse first: the others take its tables' schemas.
    used = ["128k"] + sorted({lakehouse for _, lakehouse, _ in chosen} - {"128k"})
    homes = {name: work / f"lh-{name}" for name in used}
    for name in used:
        log(f"== lakehouse {name}: {LAKEHOUSES[name] or 'Basin defaults'}")
        build(args, csv_dir, homes[name], LAKEHOUSES[name], like=homes["128k"])
    duck = {}
    if args.duckdb:
        for name in used:
            con = duckdb.connect()
            duckdb_views(args.basin, homes[name], con)
            duck[name] = [duckdb_seconds(con, (QUERIES / f"q{q:02}.sql").read_text(), args.repeat)
                          for q in range(1, 23)]
            log(f"   duckdb on {name}: {total(duck[name])}")
    results = []
    for name, lakehouse, options in chosen:
        home = homes[lakehouse]
        toml = (f'[sql]\nmemory_limit = "{args.memory}"\nquery_memory_limit = "{args.memory}"\n\n[sql.datafusion]\n'
                + "".join(f'"{k}" = {toml_value(v)}\n' for k, v in options.items()))
        (home / "basin.toml").write_text(toml)
        started = time.perf_counter()
        seconds = run_queries(args, home)
        log(f"   {name}: {total(seconds)} ({time.perf_counter() - started:.0f}s wall)")
        results.append((name, seconds))
        if args.duckdb:
            results.append((f"DuckDB on the files of {lakehouse}", duck[lakehouse]))
    header(args)
    print(f"[sql] memory limits {args.memory}.  ")
    print()
    print("| | variant | TPC-H total [s] | queries that failed |")
    print("| --- | --- | ---: | --- |")
    for i, (name, seconds) in enumerate(results):
        failed = ", ".join(f"q{q + 1:02}" for q, s in enumerate(seconds) if s is None) or "none"
        print(f"| v{i} | {name} | {total(seconds)} | {failed} |")
    print()
    print("| query | " + " | ".join(f"v{i}" for i in range(len(results))) + " |")
    print("| --- | " + " | ".join("---:" for _ in results) + " |")
    for q in range(22):
        cells = ("failed" if s[q] is None else f"{s[q]:.3f}" for _, s in results)
        print(f"| q{q + 1:02} | " + " | ".join(cells) + " |")
    shutil.rmtree(work, ignore_errors=True)


def compare_binaries(args) -> None:
    """Default settings, one lakehouse, each binary in turn, --rounds times."""
    binaries = dict(pair.split("=", 1) for pair in args.binaries.split(","))
    envs: dict[str, dict[str, str]] = {name: {} for name in binaries}
    for item in args.env:
        name, _, setting = item.partition("=")
        key, equals, value = setting.partition("=")
        if name not in envs or not equals:
            raise SystemExit(f"--env {item}: expected NAME=KEY=VALUE with NAME one of {', '.join(binaries)}")
        envs[name][key] = value
    csv_dir = generate(args.scale, Path(args.data))
    work = Path(tempfile.mkdtemp(prefix="basin-ab-"))
    home = work / "lh-128k"
    log("== lakehouse (written by the first binary)")
    args.basin = next(iter(binaries.values()))
    build(args, csv_dir, home, {})
    (home / "basin.toml").write_text(f'[sql]\nmemory_limit = "{args.memory}"\nquery_memory_limit = "{args.memory}"\n')
    runs: dict[str, list[list[float | None]]] = {name: [] for name in binaries}
    for r in range(args.rounds):
        for name, path in binaries.items():
            args.basin = path
            # Every `basin` this process starts inherits its environment.
            with mock.patch.dict(os.environ, envs[name]):
                seconds = run_queries(args, home)
            log(f"   round {r + 1}, {name}: {total(seconds)}")
            runs[name].append(seconds)
    header(args)
    print(f"[sql] memory limits {args.memory}; {args.rounds} rounds, binaries in turn.  ")
    for name, env in envs.items():
        if env:
            print(f"{name} runs with " + ", ".join(f"`{k}={v}`" for k, v in env.items()) + ".  ")
    print()
    print("| binary | " + " | ".join(f"round {r + 1} [s]" for r in range(args.rounds)) + " | best per query, summed [s] |")
    print("| --- | " + " | ".join("---:" for _ in range(args.rounds + 1)) + " |")
    best = {}
    for name, rounds in runs.items():
        best[name] = [min((s[q] for s in rounds if s[q] is not None), default=None) for q in range(22)]
        print(f"| {name} | " + " | ".join(total(s) for s in rounds) + f" | {total(best[name])} |")
    print()
    print("| query | " + " | ".join(binaries) + " |")
    print("| --- | " + " | ".join("---:" for _ in binaries) + " |")
    for q in range(22):
        cells = ("failed" if best[n][q] is None else f"{best[n][q]:.3f}" for n in binaries)
        print(f"| q{q + 1:02} | " + " | ".join(cells) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
