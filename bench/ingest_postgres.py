"""Full-load speed of `basin ingest` from a local Postgres, and change-data-capture lag at a
steady write rate (issue #17).

    python bench/ingest_postgres.py --basin target/release/basin [--rows 1000000] [--repeat 3]
        [--cdc-rate 200] [--cdc-seconds 20] [--cdc-batch-seconds 1.0]

Starts a throwaway Postgres (Debian's `postgresql` server binaries; as `nobody` when run as
root, since initdb refuses root) on a free loopback port, fills a 4-column table (int8, int4,
numeric(12,2), timestamptz) with --rows rows, and times `basin ingest` of it with 1 and with
2 readers (parallel ctid ranges), best of --repeat each. Postgres runs on the same machine,
so on 2 cores it competes with Basin for them. Prints a markdown table.

Then CDC: a 4-column table with a primary key (100,000 rows) in a publication, `basin ingest
--follow` of a `mode = "cdc"` source (the full load, then the stream), and a writer that
commits --cdc-rate transactions a second for --cdc-seconds (each an insert and an update of
a random earlier row). Every batch Basin commits reports how long after the source's commit
it landed, for its newest and its oldest transaction; the table gives their median, p95 and
maximum, and the changes a second applied. --cdc-rate 0 skips this part.
"""

import argparse
import glob
import json
import os
import shutil
import random
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from run import basin, header, log


def start_postgres(folder: Path, durable: bool = False) -> tuple[int, list, Path]:
    """A throwaway Postgres on a free loopback port, trusting local logins; `durable`: with
    fsync (the default for a real server), else without (what the ingest figures measure
    does not wait on it)."""
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "nobody")
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "-E", "UTF8",
                    "--locale=C", "--no-sync", "-A", "trust"], check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} "
               f"-c fsync={'on' if durable else 'off'} "
               "-c wal_level=logical -c max_wal_senders=4 -c max_replication_slots=4")
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
    p.add_argument("--cdc-rate", type=int, default=200, help="source transactions a second (0: no CDC run)")
    p.add_argument("--cdc-seconds", type=float, default=20)
    p.add_argument("--cdc-batch-seconds", type=float, default=1.0)
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
        if args.cdc_rate > 0:
            cdc_lag(args, port, home)
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cdc_lag(args, port: int, home: Path) -> None:
    """End-to-end lag of `basin ingest --follow` while a writer commits at a steady rate."""
    import psycopg

    log(f"== CDC: {args.cdc_rate} transactions/s for {args.cdc_seconds:.0f} s")
    psql(port, "CREATE TABLE live (id int8 PRIMARY KEY, customer int4, amount numeric(12,2), placed timestamptz); "
               "INSERT INTO live SELECT i, i % 1000, (i % 10000) / 100.0, now() FROM generate_series(1, 100000) i; "
               "CREATE PUBLICATION basin FOR TABLE live")
    with open(home / "basin.toml", "a") as f:
        f.write(f'\n[sources.live]\nurl = "postgres://postgres@127.0.0.1:{port}/postgres"\ntables = ["public.live"]\n'
                f'mode = "cdc"\nbatch_seconds = {args.cdc_batch_seconds}\n')
    proc = subprocess.Popen([args.basin, "--home", str(home), "ingest", "live", "--follow", "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=home)
    batches = []
    reader = threading.Thread(target=lambda: batches.extend(
        json.loads(line) for line in proc.stdout if '"oldest_lag_seconds"' in line), daemon=True)
    reader.start()
    conn = psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True)
    # The load is done once the table holds the slot's position.
    def loaded():
        out = subprocess.run([args.basin, "--home", str(home), "source", "ls", "--format", "json"],
                             capture_output=True, text=True, cwd=home).stdout
        return any(s["name"] == "live" and s.get("lsn") for s in json.loads(out or "[]"))

    deadline = time.monotonic() + 120
    while not loaded():
        assert time.monotonic() < deadline and proc.poll() is None, "the CDC source did not load"
        time.sleep(0.5)
    rng = random.Random(7)
    next_id, sent, started = 100_000, 0, time.monotonic()
    while time.monotonic() - started < args.cdc_seconds:
        # A steady rate: each transaction at its slot in time.
        wait = started + sent / args.cdc_rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        next_id += 1
        with conn.transaction():
            conn.execute("INSERT INTO live VALUES (%s, 1, 1.00, now())", (next_id,))
            conn.execute("UPDATE live SET amount = amount + 1 WHERE id = %s", (rng.randint(1, next_id - 1),))
        sent += 1
    elapsed = time.monotonic() - started
    # Everything written is applied once a batch holds the last transaction's LSN.
    last = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + 60
    while sum(b["transactions"] for b in batches) < sent and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    conn.close()
    applied = sum(b["transactions"] for b in batches)
    newest = [b["lag_seconds"] for b in batches]
    oldest = [b["oldest_lag_seconds"] for b in batches]
    print()
    print(f"| CDC at {args.cdc_rate} tx/s for {elapsed:.0f} s (2 changes each), batch_seconds = "
          f"{args.cdc_batch_seconds} | median | p95 | max |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| lag of a batch's newest transaction (s) | {statistics.median(newest):.2f} | "
          f"{percentile(newest, 95):.2f} | {max(newest):.2f} |")
    print(f"| lag of a batch's oldest transaction (s) | {statistics.median(oldest):.2f} | "
          f"{percentile(oldest, 95):.2f} | {max(oldest):.2f} |")
    print()
    print(f"{len(batches)} batches, {applied} of {sent} transactions applied "
          f"({2 * applied / elapsed:.0f} changes/s); WAL at {last} when the writer stopped.")


if __name__ == "__main__":
    main()
