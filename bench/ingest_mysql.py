"""`basin ingest` from a local MariaDB (issue #49): full-load speed, and change data capture's
lag at a steady rate of source transactions.

    bench-venv/bin/python bench/ingest_mysql.py --basin target/release/basin [--rows 1000000] [--repeat 3]
                                 [--rates 200,800] [--seconds 20]

Starts a throwaway MariaDB (Debian's `mariadb-server`: its own data folder, a free loopback
port, the binary log on) and fills a 4-column table (bigint, int, decimal(12,2), timestamp)
with --rows rows, and the same rows split over two tables. Times `basin ingest` with 1 and 2
readers, best of --repeat each (a second reader reads the other half of the one table's key,
or the other table).

Then, for each rate of --rates, a writer commits one-row transactions at that rate for
--seconds while `basin ingest --follow` streams them (`batch_seconds` at its default); each row
carries the time its transaction committed, and its lag is the time from there to the moment
the follow printed the batch that holds it (after its catalog commit). MariaDB runs on the
same machine, so on 2 cores it competes with Basin for them. Prints markdown tables.
"""

import argparse
import json
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pymysql

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
    proc = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "-e", statement],
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{statement}: {proc.stderr}")
    return proc


def fill(port: int, table: str, first: int, last: int) -> None:
    sql(port, f"SET SESSION max_recursive_iterations = {last + 1}; "
              f"CREATE TABLE bench.{table} (id BIGINT PRIMARY KEY, customer INT, amount DECIMAL(12,2), "
              f"placed TIMESTAMP NULL); INSERT INTO bench.{table} WITH RECURSIVE n(i) AS "
              f"(SELECT {first} UNION ALL SELECT i + 1 FROM n WHERE i < {last}) "
              f"SELECT i, i % 1000, (i % 10000) / 100, FROM_UNIXTIME(1704067200 + i) FROM n; "
              f"ANALYZE TABLE bench.{table}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--basin", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rates", default="200,800", help="source transactions per second, for CDC")
    p.add_argument("--seconds", type=float, default=20, help="how long each rate is written")
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
        print()
        cdc_lag(args, port, home, url)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def binlog_sequence(position: str) -> int:
    """`_binlog_pos` of a `file:offset`: the file's number times 2^32 plus the offset."""
    file, offset = position.rsplit(":", 1)
    return (int(file.rsplit(".", 1)[1]) << 32) + int(offset)


def cdc_lag(args, port: int, home: Path, url: str) -> None:
    sql(port, "CREATE TABLE bench.stream (id BIGINT PRIMARY KEY, written_us BIGINT)")
    with open(home / "basin.toml", "a") as toml:
        toml.write(f'[sources.cdc]\nurl = "{url}"\ntables = ["bench.stream"]\nmode = "cdc"\n')
    basin(args.basin, home, "ingest", "cdc")  # the full load, which records where the log stood
    print("| CDC, one-row transactions | transactions | batches | lag p50 [ms] | lag p99 [ms] | lag max [ms] |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n, rate in enumerate(int(r) for r in args.rates.split(",")):
        log(f"== CDC at {rate} transactions/s for {args.seconds:g}s")
        follow = subprocess.Popen([args.basin, "--home", str(home), "ingest", "cdc", "--follow", "--format", "json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        batches = []  # (when the follow printed it, the binlog sequence it reached)

        def read():
            for line in follow.stdout:
                if '"commit"' in line and '"lsn"' in line:
                    batch = json.loads(line)
                    batches.append((time.time(), binlog_sequence(batch["lsn"])))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(1)  # the follow connects and catches up
        first = (n + 1) * 10_000_000
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", database="bench", autocommit=True)
        started = time.time()
        sent = 0
        with conn.cursor() as cur:
            while time.time() - started < args.seconds:
                due = started + sent / rate
                if due > time.time():
                    time.sleep(due - time.time())
                cur.execute("INSERT INTO stream VALUES (%s, %s)", (first + sent, int(time.time() * 1e6)))
                sent += 1
        achieved = sent / (time.time() - started)
        conn.close()
        deadline = time.time() + 30
        rows = []
        while time.time() < deadline:
            rows = json.loads(basin(args.basin, home, "query", "--format", "json",
                                    f"SELECT _binlog_pos AS p, written_us AS w FROM cdc.stream_changelog "
                                    f"WHERE id >= {first} AND id < {first + sent}").stdout)
            if len(rows) == sent:
                break
            time.sleep(0.5)
        follow.send_signal(signal.SIGTERM)
        follow.wait(timeout=60)
        reader.join(timeout=10)
        assert len(rows) == sent, (len(rows), sent)
        lags = []
        for row in rows:
            arrived = next(t for t, seq in batches if seq >= row["p"])
            lags.append((arrived - row["w"] / 1e6) * 1000)
        lags.sort()
        print(f"| {rate}/s asked, {achieved:.0f}/s written for {args.seconds:g} s | {sent:,} | {len(batches)} | "
              f"{statistics.median(lags):.0f} | {lags[int(len(lags) * 0.99) - 1]:.0f} | {lags[-1]:.0f} |")


if __name__ == "__main__":
    main()
