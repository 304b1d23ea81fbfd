"""Change data capture from a real Postgres (started by test_ingest_postgres's fixtures):
`basin ingest NAME` for a `mode = "cdc"` source and `--follow`. The current-state table must
equal the source row for row, and the changelog hold each change once, whatever writers do
and wherever Basin is killed.
"""

import json
import os
import random
import signal
import subprocess
import threading
import time

import psycopg
import pytest
from pyiceberg.table import StaticTable

from conftest import BASIN, wait_for
from test_ingest_postgres import declare, postgres, db  # noqa: F401 (fixtures)

CDC = 'mode = "cdc"\nbatch_seconds = 0.2\n'


def scan(lakehouse, table):
    show = lakehouse.json("table", "show", table)
    return StaticTable.from_metadata(show["metadata_location"]).scan().to_arrow()


def current(lakehouse, table, key="id"):
    return {r[key]: r for r in scan(lakehouse, table).to_pylist()}


def source(conn, table, key="id"):
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f"SELECT * FROM {table}")
        return {r[key]: r for r in cur.fetchall()}


def differences(conn, lakehouse, table, basin_table):
    want, got = source(conn, table), current(lakehouse, basin_table)
    missing = want.keys() - got.keys()
    extra = got.keys() - want.keys()
    differing = [k for k in want.keys() & got.keys() if want[k] != got[k]]
    return len(missing), len(extra), len(differing)


def no_duplicate_changes(lakehouse, changelog, key="id"):
    rows = scan(lakehouse, changelog).select(["_op", "_lsn", key]).to_pylist()
    seen = [(r["_lsn"], r[key], r["_op"]) for r in rows]
    return len(seen) == len(set(seen)), len(seen)


SCHEMA = """
CREATE TABLE items (id int8 PRIMARY KEY, label text, qty int4, price numeric(12,2), at timestamptz);
INSERT INTO items SELECT i, 'item ' || i, i % 100, i / 100.0, timestamptz '2024-01-01 00:00+00' + i * interval '1 second'
  FROM generate_series(1, 5000) i;
CREATE PUBLICATION basin FOR TABLE items;
"""


def test_changes_after_the_load_are_applied_and_logged(lakehouse, db):
    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC)

    lakehouse("ingest", "shop")
    assert differences(conn, lakehouse, "items", "shop.items") == (0, 0, 0)
    conn.execute("INSERT INTO items VALUES (6001, 'new', 1, 1.00, now())")
    conn.execute("UPDATE items SET label = 'changed', qty = qty + 1 WHERE id % 7 = 0")
    conn.execute("DELETE FROM items WHERE id % 11 = 0")
    conn.execute("UPDATE items SET id = id + 100000 WHERE id = 5")  # a key change
    with conn.transaction():
        conn.execute("INSERT INTO items VALUES (7001, 'tx', 2, 2.00, now())")
        conn.execute("UPDATE items SET label = 'tx2' WHERE id = 7001")
        conn.execute("DELETE FROM items WHERE id = 1")

    lakehouse("ingest", "shop")

    assert differences(conn, lakehouse, "items", "shop.items") == (0, 0, 0)
    unique, n = no_duplicate_changes(lakehouse, "shop.items_changelog")
    assert unique and n > 1000
    ops = scan(lakehouse, "shop.items_changelog").column("_op").to_pylist()
    assert set(ops) == {"I", "U", "D"}
    # Lineage: the source wrote the table and its changelog, by the load and by the stream.
    lineage = json.loads(lakehouse("lineage", "shop.items", "--format", "json"))
    assert [(e["from"], e["to"]) for e in lineage["edges"]] == [("source:shop", "table:shop.items")], lineage


def test_a_transaction_past_max_transaction_changes_stops_with_a_hint_and_resumes(lakehouse, db):
    """A source transaction is held in memory until it commits: past `max_transaction_changes`
    the stream stops, says which setting, applies nothing of it, and a raised limit resumes
    from that very transaction."""
    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC + "max_transaction_changes = 50\n")
    lakehouse("ingest", "shop")
    with conn.transaction():
        conn.execute("INSERT INTO items SELECT i, 'big', 1, 1.00, now() FROM generate_series(10001, 10080) i")
    conn.execute("INSERT INTO items VALUES (20001, 'after', 1, 1.00, now())")

    stopped = lakehouse.run("ingest", "shop", check=False)
    assert stopped.returncode != 0
    assert "more than 50 changes (`max_transaction_changes`)" in stopped.stderr, stopped.stderr
    assert "hint: raise `max_transaction_changes` in [sources.shop]" in stopped.stderr
    assert len(current(lakehouse, "shop.items")) == 5000, "part of the big transaction landed"

    toml = lakehouse.home / "basin.toml"
    toml.write_text(toml.read_text().replace("max_transaction_changes = 50", "max_transaction_changes = 100"))
    lakehouse("ingest", "shop")
    assert differences(conn, lakehouse, "items", "shop.items") == (0, 0, 0)
    unique, n = no_duplicate_changes(lakehouse, "shop.items_changelog")
    assert unique and n == 81


class Writer(threading.Thread):
    """Random inserts, updates (some of the key), deletes and multi-statement transactions on
    `items`, each transaction touching a key at most once, until stopped or `limit`
    transactions ran."""

    def __init__(self, pg, dbname, seed, limit=100_000):
        super().__init__(daemon=True)
        self.conn = pg.connect(dbname)
        self.rng = random.Random(seed)
        self.limit = limit
        self.done = threading.Event()
        self.transactions = 0
        self.next_id = 1_000_000 + seed * 100_000

    def stop(self):
        self.done.set()
        self.join()
        self.conn.close()

    def run(self):
        rng = self.rng
        while not self.done.is_set() and self.transactions < self.limit:
            keys = rng.sample(range(1, 3000), rng.choice([1, 1, 2, 5]))
            with self.conn.transaction():
                for key in keys:
                    kind = rng.random()
                    if kind < 0.35:
                        self.next_id += 1
                        self.conn.execute("INSERT INTO items VALUES (%s, 'w', %s, 1.25, now())",
                                          (self.next_id, key % 50))
                    elif kind < 0.75:
                        self.conn.execute("UPDATE items SET qty = qty + 1, label = label || '+' WHERE id = %s",
                                          (key,))
                    elif kind < 0.9:
                        self.conn.execute("DELETE FROM items WHERE id = %s", (key,))
                    else:
                        self.next_id += 1
                        self.conn.execute("UPDATE items SET id = %s WHERE id = %s", (self.next_id, key))
            self.transactions += 1


def follow(lakehouse):
    """`basin ingest shop --follow` in the background; its stderr goes to follow.log."""
    log = open(lakehouse.home / "follow.log", "a")
    return subprocess.Popen([BASIN, "--home", str(lakehouse.home), "ingest", "shop", "--follow", "--format", "json"],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=lakehouse.env,
                            cwd=lakehouse.home)


def follow_log(lakehouse):
    return (lakehouse.home / "follow.log").read_text()


def wait_equal(conn, lakehouse, seconds=20):
    last = []

    def equal():
        try:
            last[:] = [differences(conn, lakehouse, "items", "shop.items")]
        except AssertionError:  # the table is not there yet
            return False
        return last[0] == (0, 0, 0)

    try:
        wait_for(equal, seconds)
    except AssertionError:
        log = follow_log(lakehouse) if (lakehouse.home / "follow.log").exists() else ""
        raise AssertionError(f"missing, extra, differing rows: {last}\n{log[-3000:]}")


def test_a_load_and_stream_under_a_concurrent_writer_end_equal(lakehouse, db):
    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC)
    writer = Writer(pg, name, seed=1, limit=4000)
    writer.start()
    time.sleep(0.3)
    proc = follow(lakehouse)  # the load runs while the writer writes
    try:
        wait_for(lambda: writer.transactions >= 4000, 60)
        writer.stop()
        assert writer.transactions >= 4000
        wait_equal(conn, lakehouse)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, follow_log(lakehouse)
    batches = [json.loads(line) for line in out.splitlines() if '"transactions"' in line and '"commit"' in line]
    assert batches and sum(b["transactions"] for b in batches) > 0
    unique, n = no_duplicate_changes(lakehouse, "shop.items_changelog")
    # Transactions committed before the slot's snapshot are in the load, not the changelog
    # (how many depends on how fast `basin` starts); the tables' equality above is the check
    # that nothing was missed, this one that nothing came twice.
    assert unique and n > 0


def test_kill_9_during_the_load_and_the_stream_then_restart_ends_equal_without_duplicates(lakehouse, db):
    pg, name, conn = db
    conn.execute(SCHEMA)
    # Enough rows that the load takes a while; small batches, so kills land between and
    # inside commits.
    conn.execute("INSERT INTO items SELECT i, repeat('x', 50), 1, 1, now() FROM generate_series(10001, 150000) i")
    declare(lakehouse, pg, name, ["public.items"], extra='mode = "cdc"\nbatch_rows = 200\nbatch_seconds = 0.05\n')
    writer = Writer(pg, name, seed=2, limit=3000)
    writer.start()
    try:
        # Killed once its slot exists: inside the load, which then never commits.
        proc = follow(lakehouse)
        deadline = time.monotonic() + 30
        while not conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'basin_shop'").fetchone()[0]:
            assert time.monotonic() < deadline and proc.poll() is None, follow_log(lakehouse)
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        assert lakehouse.json("table", "ls") == []
        # Then during the stream, after the load of a second run.
        for delay in [4.0, 1.0, 1.7]:
            proc = follow(lakehouse)
            time.sleep(delay)
            proc.kill()
            proc.wait()
        assert "Loaded" in follow_log(lakehouse)
        wait_for(lambda: writer.transactions >= 3000, 60)
    finally:
        writer.stop()
    lakehouse("ingest", "shop")  # catches up and stops
    assert differences(conn, lakehouse, "items", "shop.items") == (0, 0, 0)
    unique, n = no_duplicate_changes(lakehouse, "shop.items_changelog")
    assert unique and n > 0


def test_a_column_added_at_the_source_is_added_to_both_tables(lakehouse, db):
    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC)
    proc = follow(lakehouse)
    try:
        wait_equal(conn, lakehouse)
        conn.execute("UPDATE items SET qty = 0 WHERE id = 3")
        conn.execute("ALTER TABLE items ADD COLUMN note text")
        conn.execute("UPDATE items SET note = 'noted ' || id WHERE id < 20")
        conn.execute("INSERT INTO items VALUES (9001, 'n', 1, 1.00, now(), 'fresh')")
        wait_equal(conn, lakehouse)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0, follow_log(lakehouse)
    assert current(lakehouse, "shop.items")[9001]["note"] == "fresh"
    log = scan(lakehouse, "shop.items_changelog").to_pylist()
    assert {r["note"] for r in log if r["id"] == 9001} == {"fresh"}


def test_a_dropped_column_stops_with_a_hint_after_committing_what_came_before(lakehouse, db):
    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC)
    lakehouse("ingest", "shop")
    conn.execute("UPDATE items SET label = 'before' WHERE id = 2")
    conn.execute("ALTER TABLE items DROP COLUMN qty")
    conn.execute("UPDATE items SET label = 'after' WHERE id = 2")

    failed = lakehouse.run("ingest", "shop", check=False)

    assert failed.returncode == 1 and "hint:" in failed.stderr, failed.stderr
    error, hint = failed.stderr.split("hint:", 1)
    assert "public.items.qty was dropped or renamed at the source" in error, failed.stderr
    assert "basin ingest shop --full" in hint
    assert current(lakehouse, "shop.items")[2]["label"] == "before"
    assert current(lakehouse, "shop.items")[2]["qty"] is not None


def test_source_ls_shows_the_lag_and_rm_drops_the_slot(lakehouse, db):
    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC)
    lakehouse("ingest", "shop")
    time.sleep(2)  # the last change applied is 2 s old
    conn.execute("UPDATE items SET qty = qty + 1 WHERE id < 500")  # not applied yet
    time.sleep(1.5)

    listed = lakehouse.json("source", "ls")[0]

    assert listed["slot"] == "basin_shop" and listed["lsn"].count("/") == 1 and listed["last_commit"]
    # The lag is the waiting update's age, not the last applied change's.
    assert listed["lag_bytes"] > 0 and 1.4 < listed["lag_seconds"] < 3.4, listed
    table = lakehouse("source", "ls")
    assert "basin_shop" in table and "lag bytes" in table
    lakehouse("ingest", "shop")
    # WAL the slot has not confirmed, with nothing for the publication in it: a table outside
    # it. The lag in bytes is real (the server keeps that WAL); nothing waits, so 0 seconds.
    conn.execute("CREATE TABLE elsewhere AS SELECT g AS id FROM generate_series(1, 1000) g")
    time.sleep(1.5)
    caught_up = lakehouse.json("source", "ls")[0]
    assert caught_up["lsn"] != listed["lsn"] and caught_up["lag_bytes"] > 0, caught_up
    assert caught_up["lag_seconds"] == 0, caught_up

    removed = lakehouse.run("source", "rm", "shop")

    assert "dropped its replication slot `basin_shop`" in removed.stderr
    slots = conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'basin_shop'").fetchone()
    assert slots[0] == 0


def test_a_table_without_a_key_is_refused_with_a_hint(lakehouse, db):
    pg, name, conn = db
    conn.execute("CREATE TABLE loose (a int4, b text); CREATE PUBLICATION basin FOR TABLE loose")
    declare(lakehouse, pg, name, ["public.loose"], extra=CDC)

    failed = lakehouse.run("ingest", "shop", check=False)

    assert failed.returncode == 1
    assert "no primary key and no replica identity" in failed.stderr
    assert "REPLICA IDENTITY FULL" in failed.stderr.split("hint:", 1)[1]
    conn.execute("ALTER TABLE loose REPLICA IDENTITY FULL; INSERT INTO loose VALUES (1, 'x'), (2, 'y')")
    lakehouse("ingest", "shop")
    conn.execute("UPDATE loose SET b = 'z' WHERE a = 1; DELETE FROM loose WHERE a = 2")
    lakehouse("ingest", "shop")
    assert sorted((r["a"], r["b"]) for r in scan(lakehouse, "shop.loose").to_pylist()) == [(1, "z")]


def test_serve_streams_cdc_sources_and_exports_their_lag(lakehouse, db):
    import urllib.request

    from conftest import start_server

    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC)
    base, proc = start_server(lakehouse, "--no-auth")
    try:
        wait_equal(conn, lakehouse)  # the full load, by the server
        conn.execute("UPDATE items SET qty = -1 WHERE id < 100; DELETE FROM items WHERE id > 4900")
        wait_equal(conn, lakehouse)

        def metrics():
            return urllib.request.urlopen(f"{base}/metrics").read().decode()

        wait_for(lambda: 'basin_source_changes_total{source="shop"} 199' in metrics(), 20)
        text = metrics()
        assert 'basin_source_lag_bytes{source="shop"}' in text
        assert 'basin_source_lag_seconds{source="shop"}' in text
        assert 'basin_source_stops_total{source="shop"} 0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_truncate_empties_the_table_and_later_rows_land(lakehouse, db):
    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC)
    lakehouse("ingest", "shop")
    with conn.transaction():
        conn.execute("UPDATE items SET qty = 7 WHERE id = 1")
        conn.execute("TRUNCATE items")
        conn.execute("INSERT INTO items VALUES (1, 'again', 1, 1.00, now()), (2, 'two', 2, 2.00, now())")

    lakehouse("ingest", "shop")

    assert differences(conn, lakehouse, "items", "shop.items") == (0, 0, 0)
    assert sorted(current(lakehouse, "shop.items")) == [1, 2]
    ops = scan(lakehouse, "shop.items_changelog").column("_op").to_pylist()
    assert ops == ["U", "T", "I", "I"]


def test_two_servers_stream_a_source_one_at_a_time_and_one_takes_over(lakehouse, db):
    """Two `basin serve` of one lakehouse both declare the source: the holder of its lease in
    the catalog streams it, the other waits; killed, the holder's lease runs out (30 s) and the
    other takes over, so the changes keep arriving, once."""
    import re

    pg, name, conn = db
    conn.execute(SCHEMA)
    declare(lakehouse, pg, name, ["public.items"], extra=CDC)
    lakehouse("ingest", "shop")  # the full load, so both servers only stream
    logs = [lakehouse.home.parent / f"serve{n}.log" for n in (1, 2)]
    procs = [subprocess.Popen([BASIN, "--home", str(lakehouse.home), "serve", "--no-auth",
                               "--listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                              stderr=open(log, "w"), env={**lakehouse.env, "RUST_LOG": "info",
                                                          "BASIN_NODE_NAME": f"serve{n}"})
             for n, log in zip((1, 2), logs)]

    def streaming():
        return [n for n, log in zip((1, 2), logs) if re.search(r"streaming changes", log.read_text())]

    try:
        wait_for(lambda: streaming() and all("Serving" in log.read_text() for log in logs), 60)
        time.sleep(2)
        assert len(streaming()) == 1, [log.read_text()[-2000:] for log in logs]
        holder = streaming()[0]
        waiting = 3 - holder
        assert "another node streams this source" in logs[waiting - 1].read_text()
        conn.execute("UPDATE items SET qty = -1 WHERE id < 100")
        wait_equal(conn, lakehouse)

        procs[holder - 1].kill()
        conn.execute("UPDATE items SET qty = -2 WHERE id < 50; DELETE FROM items WHERE id > 4990")
        wait_for(lambda: "streaming changes" in logs[waiting - 1].read_text(), 90)
        wait_equal(conn, lakehouse)
        assert differences(conn, lakehouse, "items", "shop.items") == (0, 0, 0)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
