"""Full-load speed of `basin ingest` from a local MariaDB (issue #49).

    python bench/ingest_mysql.py --basin target/release/basin [--rows 1000000] [--repeat 3]

Starts a throwaway MariaDB (Debian's `mariadb-server`: its own data folder, a free loopback
port, the binary log on) and fills a 4-column table (bigint, int, decimal(12,2), timestamp)
with --rows rows, and the same rows split over two tables. Times `basin ingest` with 1 and 2
readers, best of --repeat each: readers share out whole tables, so a second one helps only
with two tables. MariaDB runs on the same machine, so on 2 cores it competes with Basin for
them. Prints a markdown table.
"""

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from run import basin, header, log


def start_mariadb(folder: Path) -> tuple[int, subprocess.Popen]:
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={folder / 'data'}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"], check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={folder / 'data'}", f"--socket={folder / 'sock'}",
         f"--port={port}", "--bind-address=127.0.0.1", "--user=root", f"--log-bin={folder / 'binlog'}",
         "--binlog-format=ROW", "--server-id=1", "--innodb-buffer-pool-size=512M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while sql(port, "SELECT 1", check=False).returncode != 0:
        if time.time() > deadline or server.poll() is not None:
            raise RuntimeError("mariadbd did not start")
        time.sleep(0.2)
    return port, server


def sql(port: int, statement: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "-e", statement],
                          check=check, capture_output=True, text=True)


def fill(port: int, table: str, first: int, last: int) -> None:
    sql(port, f"CREATE TABLE bench.{table} (id BIGINT PRIMARY KEY, customer INT, amount DECIMAL(12,2), "
              f"placed TIMESTAMP NULL); INSERT INTO bench.{table} SELECT seq, seq % 1000, (seq % 10000) / 100, "
              f"FROM_UNIXTIME(1704067200 + seq) FROM seq_{first}_to_{last}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--basin", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="basin-bench-mariadb-"))
    port, server = start_mariadb(folder)
    try:
        log(f"== filling {args.rows} rows, in one table and in two")
        sql(port, "CREATE DATABASE bench")
        fill(port, "whole", 1, args.rows)
        fill(port, "half_a", 1, args.rows // 2)
        fill(port, "half_b", args.rows // 2 + 1, args.rows)
        home = folder / "lakehouse"
        home.mkdir()
        subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)
        url = f"mysql://root@127.0.0.1:{port}/bench"
        (home / "basin.toml").write_text(
            f'[sources.one]\nurl = "{url}"\ntables = ["bench.whole"]\n'
            f'[sources.two]\nurl = "{url}"\ntables = ["bench.half_a", "bench.half_b"]\n')
        header(args, tpch=False)
        print(f"| {args.rows:,} rows, 4 columns | seconds (best of {args.repeat}) | rows/s | MB/s read |")
        print("| --- | ---: | ---: | ---: |")
        for source, shape in (("one", "one table"), ("two", "two tables")):
            for readers in (1, 2):
                best = None
                for _ in range(args.repeat):
                    out = basin(args.basin, home, "ingest", source, "--readers", str(readers), "--format", "json")
                    report = json.loads(out.stdout)
                    assert report["rows"] == args.rows, report
                    if best is None or report["seconds"] < best["seconds"]:
                        best = report
                print(f"| {shape}, {readers} reader{'s' if readers > 1 else ''} | {best['seconds']:.2f} | "
                      f"{best['rows_per_second']:,.0f} | {best['bytes'] / best['seconds'] / 1e6:.0f} |")
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
