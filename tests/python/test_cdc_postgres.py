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
