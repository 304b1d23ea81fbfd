"""Change data capture from a real MariaDB server's binary log (started here, as in
test_ingest_mysql.py): `basin ingest NAME` for a `mode = "cdc"` source loads the tables once,
then applies the log's row events, whole transactions per commit.

What it must show: every type streamed equal to the source row by row; inserts, updates (a
key changed too), deletes, a transaction over two tables, a rolled-back one and a TRUNCATE
applied exactly; every change in the changelog; the position in the snapshot summary and in
`source ls`; a stream SIGKILLed three times under a concurrent writer losing and repeating
nothing; a column added at the source while streaming; MariaDB resuming by GTID once the
position's file is purged; `basin serve` streaming it with its lag in /metrics; a server that does not log rows,
or a table without a key, refused with the fix in the hint and nothing committed.
"""

import json
import random
import signal
import subprocess
import threading
import time
import urllib.request

from pyiceberg.table import StaticTable

from conftest import BASIN, start_server, wait_for
from mariadb_server import (  # noqa: F401 - mariadb is a fixture
    KINDS, ROWS, assert_rows_equal, database, lakehouse_for, mariadb, source_rows)

CDC = 'mode = "cdc"\nbatch_seconds = 0.2\n'


def ingest(b) -> dict:
    """`basin ingest shop` of a CDC source: a JSON line per batch, then the report."""
    return json.loads(b("ingest", "shop", "--format", "json").splitlines()[-1])


def position(b) -> str:
    """Where the tables stand in the source's binary log (`source ls`)."""
    return {s["name"]: s for s in b.json("source", "ls")}["shop"]["lsn"]


def rows_of(b, table: str) -> list:
    show = b.json("table", "show", table)
    return StaticTable.from_metadata(show["metadata_location"]).scan().to_arrow().to_pylist()


def summary_of(b, table: str) -> dict:
    show = b.json("table", "show", table)
    return StaticTable.from_metadata(show["metadata_location"]).current_snapshot().summary


def test_every_type_and_every_kind_of_change_streams_exactly(tmp_path, mariadb):
    database(mariadb, "cdc_kinds", KINDS,
             "CREATE TABLE items (order_id INT, line INT, qty INT UNSIGNED, PRIMARY KEY (order_id, line))")
    b = lakehouse_for(tmp_path, mariadb, "cdc_kinds", CDC)
    first = ingest(b)
    assert first["full_load"]["rows"] == 0 and first["lsn"].startswith("binlog."), first

    with mariadb.connect("cdc_kinds") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute(f"INSERT INTO kinds VALUES {', '.join(ROWS)}")
        conn.autocommit(False)
        cur.execute("INSERT INTO items VALUES (1, 1, 4294967295), (1, 2, 5), (2, 1, 7)")
        cur.execute("UPDATE kinds SET vc = 'in one txn' WHERE id = 1")
        conn.commit()
        cur.execute("INSERT INTO items VALUES (9, 9, 9)")
        conn.rollback()  # never in the log
    report = ingest(b)
    assert report["full_load"] is None and report["changes"] == 7 and report["transactions"] == 2, report
    assert_rows_equal(rows_of(b, "shop.kinds"), source_rows(mariadb, "cdc_kinds"))
    assert sorted((r["order_id"], r["line"], r["qty"]) for r in rows_of(b, "shop.items")) == [
        (1, 1, 4294967295), (1, 2, 5), (2, 1, 7)]
    summary = summary_of(b, "shop.kinds")
    assert summary["basin.source"] == "shop" and summary["basin.source.binlog"] == report["lsn"], summary

    with mariadb.connect("cdc_kinds") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("UPDATE kinds SET id = 30, en = 'small', st = 'y,z', d = 2.5 WHERE id = 3")  # a new key
        cur.execute("UPDATE kinds SET bu = 18446744073709551614, iu = 4000000000, bn = 'x' WHERE id = 2")
        cur.execute("DELETE FROM kinds WHERE id = 1")
        cur.execute("TRUNCATE TABLE items")
        cur.execute("INSERT INTO items VALUES (3, 1, 1)")
    report = ingest(b)
    assert report["transactions"] == 5, report
    assert_rows_equal(rows_of(b, "shop.kinds"), source_rows(mariadb, "cdc_kinds"))
    assert [(r["order_id"], r["line"]) for r in rows_of(b, "shop.items")] == [(3, 1)]

    ops = b.json("query", "SELECT _op, count(*) AS n FROM shop.kinds_changelog GROUP BY _op ORDER BY _op")
    assert ops == [{"_op": "D", "n": 1}, {"_op": "I", "n": 3}, {"_op": "U", "n": 3}], ops
    # `_binlog_pos`: the log file's number times 2^32 plus the offset after the transaction.
    file, offset = report["lsn"].rsplit(":", 1)
    last = (int(file.rsplit(".", 1)[1]) << 32) + int(offset)
    positions = b.json("query", "SELECT _op, max(_binlog_pos) AS p FROM shop.items_changelog GROUP BY _op ORDER BY _op")
    assert [p["_op"] for p in positions] == ["I", "T"] and positions[0]["p"] == last > positions[1]["p"], positions

    # A column added at the source while streaming: the rows before it have none.
    with mariadb.connect("cdc_kinds") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (3, 2, 2)")
        cur.execute("ALTER TABLE items ADD COLUMN note VARCHAR(20)")
        cur.execute("INSERT INTO items VALUES (4, 1, 8, 'after the change')")
        cur.execute("UPDATE items SET note = 'set later' WHERE order_id = 3 AND line = 1")
    report = ingest(b)
    assert report["transactions"] == 3, report
    assert sorted((r["order_id"], r["line"], r["qty"], r["note"]) for r in rows_of(b, "shop.items")) == [
        (3, 1, 1, "set later"), (3, 2, 2, None), (4, 1, 8, "after the change")]
    assert "note" in [c["name"] for c in b.json("table", "show", "shop.items_changelog")["columns"]]

    # Caught up: nothing more to apply, no commit made.
    log = b.json("log")
    again = ingest(b)
    assert again["batches"] == 0 and again["lsn"] == report["lsn"] and b.json("log") == log, again
    listed = {s["name"]: s for s in b.json("source", "ls")}["shop"]
    assert listed["lsn"] == report["lsn"] and listed["lag_bytes"] == 0 and listed["lag_seconds"] == 0, listed


def test_a_stream_killed_three_times_loses_and_repeats_nothing(tmp_path, mariadb):
    database(mariadb, "bank",
             "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT)",
             "CREATE TABLE moves (id BIGINT PRIMARY KEY, account INT, amount BIGINT)",
             "INSERT INTO accounts VALUES (1, 0), (2, 0)")
    b = lakehouse_for(tmp_path, mariadb, "bank", CDC)
    ingest(b)
    stop = threading.Event()
    written = [0]

    def writer():
        with mariadb.connect("bank") as conn, conn.cursor() as cur:
            conn.autocommit(False)
            n = 0
            while not stop.is_set():
                n += 1
                account = 1 + n % 2
                cur.execute("INSERT INTO moves VALUES (%s, %s, %s)", (n, account, n))
                cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (n, account))
                conn.commit()
                written[0] = n
                time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        rng = random.Random(3)
        for _ in range(3):
            held = position(b)
            proc = subprocess.Popen([BASIN, "--home", str(b.home), "ingest", "shop", "--follow"], env=b.env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Killed once it has committed a batch, mid-stream (the writer never pauses).
            wait_for(lambda: position(b) != held, 60)
            time.sleep(rng.uniform(0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        stop.set()
        thread.join()
    report = ingest(b)
    n = written[0]
    moves = b.json("query", "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(amount) AS s FROM shop.moves")
    assert moves == [{"n": n, "d": n, "s": n * (n + 1) // 2}], (moves, n, report)
    with mariadb.connect("bank") as conn, conn.cursor() as cur:
        cur.execute("SELECT id, balance FROM accounts ORDER BY id")
        balances = [{"id": i, "balance": v} for i, v in cur.fetchall()]
    assert b.json("query", "SELECT id, balance FROM shop.accounts ORDER BY id") == balances
    # Every change once in each changelog: n inserts of moves, n updates of accounts.
    assert b.json("query", "SELECT _op, count(*) AS n FROM shop.moves_changelog GROUP BY _op") == [
        {"_op": "I", "n": n}]
    assert b.json("query", "SELECT _op, count(*) AS n FROM shop.accounts_changelog GROUP BY _op") == [
        {"_op": "U", "n": n}]


def test_serve_streams_a_cdc_source_and_reports_its_lag(tmp_path, mariadb):
    database(mariadb, "served", "CREATE TABLE events (id INT PRIMARY KEY, what VARCHAR(20))")
    b = lakehouse_for(tmp_path, mariadb, "served", CDC)
    base, proc = start_server(b, "--no-auth")
    try:
        wait_for(lambda: "shop.events" in b("table", "ls"), 60)
        with mariadb.connect("served") as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO events VALUES (%s, %s)", [(i, f"e{i}") for i in range(50)])
        wait_for(lambda: b.json("query", "SELECT count(*) AS n FROM shop.events") == [{"n": 50}], 60)
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'basin_source_changes_total{source="shop"} 50' in metrics, metrics
        assert 'basin_source_lag_seconds{source="shop"}' in metrics
    finally:
        proc.kill()
        proc.wait()


def test_what_streaming_needs_is_checked_first_with_the_fix_in_the_hint(tmp_path, mariadb):
    database(mariadb, "plain", "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT, n INT)",
             "CREATE TABLE loose (body TEXT)")
    b = lakehouse_for(tmp_path, mariadb, "plain", CDC)
    log = b.json("log")
    keyless = b.run("ingest", "shop", check=False)
    assert keyless.returncode != 0 and "plain.loose has no primary key" in keyless.stderr, keyless.stderr
    assert "ADD PRIMARY KEY" in keyless.stderr
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE plain.loose")
        cur.execute("SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        statement = b.run("ingest", "shop", check=False)
    finally:
        with mariadb.connect() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL binlog_format = 'ROW'")
    assert statement.returncode != 0 and "binlog_format is STATEMENT" in statement.stderr, statement.stderr
    assert "SET GLOBAL binlog_format = 'ROW'" in statement.stderr
    assert b.json("log") == log and b.json("table", "ls") == []

    # What streaming cannot apply exactly stops it, named, with nothing committed.
    ingest(b)
    with mariadb.connect("plain") as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE notes MODIFY n BIGINT")
        cur.execute("INSERT INTO notes VALUES (1, 'wide', 5000000000)")
    log = b.json("log")
    retyped = b.run("ingest", "shop", check=False)
    assert retyped.returncode != 0 and "column n is bigint" in retyped.stderr and "--full" in retyped.stderr, retyped.stderr
    assert b.json("log") == log
    b("table", "rm", "shop.notes")  # (no batch made its changelog yet)
    ingest_full = json.loads(b("ingest", "shop", "--full", "--format", "json").splitlines()[-1])
    assert ingest_full["full_load"]["rows"] == 1
    assert b.json("query", "SELECT n FROM shop.notes") == [{"n": 5000000000}]
    with mariadb.connect("plain") as conn, conn.cursor() as cur:
        for statement in ("XA START 'x'", "INSERT INTO notes VALUES (2, 'xa', 1)", "XA END 'x'",
                          "XA PREPARE 'x'", "XA COMMIT 'x'"):
            cur.execute(statement)
    log = b.json("log")
    xa = b.run("ingest", "shop", check=False)
    assert xa.returncode != 0 and "an XA transaction" in xa.stderr, xa.stderr
    assert b.json("log") == log

def test_mariadb_streams_resume_from_their_gtid_when_the_file_is_gone(tmp_path, mariadb):
    database(mariadb, "gtids", "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(20))")
    b = lakehouse_for(tmp_path, mariadb, "gtids", CDC)
    ingest(b)
    with mariadb.connect("gtids") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two')")
    held = ingest(b)["lsn"]
    summary = summary_of(b, "shop.notes")
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        assert summary["basin.source.gtid"] == cur.fetchone()[0], summary
        # The tables' file is purged: only the GTID says where they stand now.
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("INSERT INTO gtids.notes VALUES (3, 'three')")
        cur.execute("UPDATE gtids.notes SET body = 'uno' WHERE id = 1")
        cur.execute("SHOW MASTER STATUS")
        current = cur.fetchone()[0]
        cur.execute(f"PURGE BINARY LOGS TO '{current}'")
        cur.execute("SHOW BINARY LOGS")
        assert held.split(":")[0] not in [row[0] for row in cur.fetchall()]
    report = ingest(b)
    assert report["transactions"] == 2 and report["lsn"].startswith(current), report
    assert b.json("query", "SELECT id, body FROM shop.notes ORDER BY id") == [
        {"id": 1, "body": "uno"}, {"id": 2, "body": "two"}, {"id": 3, "body": "three"}]
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        assert summary_of(b, "shop.notes")["basin.source.gtid"] == cur.fetchone()[0]

