"""Full-load speed of `basin ingest` from a local Postgres (issue #17).

    python bench/ingest_postgres.py --basin target/release/basin [--rows 1000000] [--repeat 3]

Starts a throwaway Postgres (Debian's `postgresql` server binaries; as `nobody` when run as
root, since initdb refuses root) on a free loopback port, fills a 4-column table (int8, int4,
numeric(12,2), timestamptz) with --rows rows, and times `basin ingest` of it with 1 and with
2 readers (parallel ctid ranges), best of --repeat each. Postgres runs on the same machine,
so on 2 cores it competes with Basin for them. Prints a markdown table.
"""

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from run import basin, header, log


def start_postgres(folder: Path) -> tuple[int, list, Path]:
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "nobody")
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "-E", "UTF8",
                    "--locale=C", "--no-sync", "-A", "trust"], check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} -c fsync=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"), "-w",
                    "-o", options, "start"], check=True, capture_output=True)
    return port, as_user, bindir


def psql(port: int, sql: str) -> None:
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--basin", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="basin-bench-pg-"))
    port, as_user, bindir = start_postgres(folder)
    try:
        log(f"== filling a {args.rows}-row table")
        psql(port, "CREATE TABLE t4 (id int8, customer int4, amount numeric(12,2), placed timestamptz); "
                   f"INSERT INTO t4 SELECT i, i % 1000, (i % 10000) / 100.0, "
                   f"timestamptz '2024-01-01 00:00+00' + i * interval '1 second' FROM generate_series(1, {args.rows}) i")
        psql(port, "VACUUM ANALYZE t4")
        home = folder / "lakehouse"
        home.mkdir()
        subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)
        (home / "basin.toml").write_text(f'[sources.bench]\nurl = "postgres://postgres@127.0.0.1:{port}/postgres"\n'
                                         'tables = ["public.t4"]\n')
        header(args, tpch=False)
        print(f"| {args.rows:,} rows, 4 columns | seconds (best of {args.repeat}) | rows/s | COPY MB/s |")
        print("| --- | ---: | ---: | ---: |")
        for readers in (1, 2):
            best = None
            for _ in range(args.repeat):
                out = basin(args.basin, home, "ingest", "bench", "--readers", str(readers), "--format", "json")
                table = json.loads(out.stdout)["tables"][0]
                assert table["rows"] == args.rows, table
                if best is None or table["seconds"] < best["seconds"]:
                    best = table
            print(f"| `basin ingest`, {readers} reader{'s' if readers > 1 else ''} | {best['seconds']:.2f} | "
                  f"{best['rows_per_second']:,.0f} | {best['bytes'] / best['seconds'] / 1e6:.0f} |")
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
