"""The change feed: `table_changes(table, FROM, TO)` against a brute-force diff (full scans of
both sides) over random pairs of commits of a table that saw appends, copy-on-write deletes
and overwrites (PyIceberg through the Iceberg REST catalog), a schema change, a merge and a
compaction (Basin's CLI)."""

import random
from collections import Counter

import psycopg
import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.types import StringType

from conftest import start_server

TABLE = "sales.orders"


def rows(ids, note=None):
    columns = {"id": pa.array(ids, pa.int64()), "amount": pa.array([i * 1.5 for i in ids], pa.float64())}
    if note is not None:
        columns["note"] = pa.array([note] * len(ids), pa.string())
    return pa.table(columns)


def history(lakehouse, base):
    """Builds the table's history on main; returns the commits of main, oldest first, and
    the commits just before and after the compaction."""
    main = RestCatalog("basin", uri=base, warehouse="main")
    main.create_namespace("sales")
    table = main.create_table(TABLE, schema=rows([]).schema)
    table.append(rows(list(range(1, 41))))
    table.append(rows([5, 5, 41, 42]))  # duplicates of rows already there: a multiset
    table = main.load_table(TABLE)
    table.delete("id < 4")  # copy-on-write: the files rewritten without those rows
    table = main.load_table(TABLE)
    table.overwrite(rows([10, 11, 12, 500]), overwrite_filter="id >= 10 AND id <= 12")
    table = main.load_table(TABLE)
    with table.update_schema() as update:
        update.add_column("note", StringType())
    table = main.load_table(TABLE)
    table.append(rows([60, 61], note="late"))
    lakehouse("branch", "create", "dev")
    dev = RestCatalog("basin", uri=base, warehouse="dev")
    dev.load_table(TABLE).append(rows([70, 71], note="dev"))
    main.load_table(TABLE).append(rows([80], note="main"))
    lakehouse("merge", "dev")
    before_compaction = lakehouse.json("log", "--limit", "1")[0]["id"]
    lakehouse("table", "compact", TABLE, "--target-file-size", "64MiB")
    after_compaction = lakehouse.json("log", "--limit", "1")[0]["id"]
    table = main.load_table(TABLE)
    table.delete("id = 41")
    commits = [e["id"] for e in reversed(lakehouse.json("log", "--limit", "100"))]
    return commits, before_compaction, after_compaction


def scan(lakehouse, commit):
    """The table's columns and every row at `commit` (`None` if it is not there yet)."""
    at = f"main@{commit}"
    tables = lakehouse.json("table", "ls", "--ref", at)
    if not any(t["table"] == TABLE for t in tables):
        return None
    columns = [c["name"] for c in lakehouse.json("table", "show", TABLE, "--ref", at)["columns"]]
    return columns, lakehouse.json("query", f"SELECT * FROM {TABLE}", "--ref", at)


def changes(lakehouse, a, b):
    return lakehouse.json("query", f"SELECT * FROM table_changes('{TABLE}', 'main@{a}', 'main@{b}')",
                          "--ref", "main")


def brute_force(before, after):
    """The multisets of rows only in `after` (inserts) and only in `before` (deletes), both
    read with `after`'s columns (or `before`'s, when the table is gone there)."""
    columns = (after or before)[0]
    as_rows = lambda side: Counter(tuple(r.get(c) for c in columns) for r in (side[1] if side else []))
    a, b = as_rows(before), as_rows(after)
    return b - a, a - b, columns


def test_the_change_feed_equals_a_brute_force_diff_over_random_pairs_of_commits(lakehouse, tmp_path):
    base, proc = start_server(lakehouse, "--no-auth")
    try:
        commits, before_compaction, after_compaction = history(lakehouse, base)
    finally:
        proc.kill()
        proc.wait()
    assert len(commits) >= 10
    shown = lakehouse.json("table", "show", TABLE)
    operations = {s["operation"] for s in shown["snapshots"]}
    assert {"append", "overwrite", "replace"} <= operations, operations

    # A compaction rewrote every file and changed no row.
    assert changes(lakehouse, before_compaction, after_compaction) == []

    scans = {c: scan(lakehouse, c) for c in commits}
    rng = random.Random(52)
    pairs = [tuple(rng.sample(commits, 2)) for _ in range(30)]
    pairs.append((commits[0], commits[-1]))
    nonempty = 0
    for a, b in pairs:
        if scans[a] is None and scans[b] is None:
            continue
        inserts, deletes, columns = brute_force(scans[a], scans[b])
        got = changes(lakehouse, a, b)
        assert all(r["_change"] in ("insert", "delete") for r in got), got
        as_counter = lambda kind: Counter(tuple(r.get(c) for c in columns) for r in got if r["_change"] == kind)
        assert as_counter("insert") == inserts, (a, b)
        assert as_counter("delete") == deletes, (a, b)
        nonempty += bool(got)
        # Every change names the snapshot and the commit that made it, when made after `a`
        # on the history of `b`.
        if commits.index(a) < commits.index(b):
            assert all(r["_snapshot_id"] is not None and r["_commit"] in commits for r in got), got
    assert nonempty >= 20


def test_a_key_pairs_deletes_and_inserts_into_updates_and_errors_name_what_is_wrong(lakehouse, tmp_path):
    base, proc = start_server(lakehouse, "--no-auth", "--pg-listen", "127.0.0.1:0")
    try:
        main = RestCatalog("basin", uri=base, warehouse="main")
        main.create_namespace("sales")
        from pyiceberg.schema import Schema
        from pyiceberg.types import DoubleType, LongType, NestedField
        schema = Schema(NestedField(1, "id", LongType(), required=True),
                        NestedField(2, "amount", DoubleType(), required=False),
                        identifier_field_ids=[1])
        table = main.create_table(TABLE, schema=schema)
        keyed = lambda ids, amounts: pa.table({"id": pa.array(ids, pa.int64()), "amount": pa.array(amounts, pa.float64())},
                                              schema=pa.schema([pa.field("id", pa.int64(), nullable=False),
                                                                pa.field("amount", pa.float64())]))
        table.append(keyed([1, 2, 3], [1.0, 2.0, 3.0]))
        lakehouse("tag", "create", "v1")
        table = main.load_table(TABLE)
        table.overwrite(keyed([2, 4], [20.0, 4.0]), overwrite_filter="id = 2")
        # The same function on the Postgres door.
        with psycopg.connect(host="127.0.0.1", port=proc.port, user="analyst", dbname="main") as conn:
            answer = conn.execute(f"SELECT id, _change FROM table_changes('{TABLE}', 'v1', 'main') "
                                  "ORDER BY id, _change").fetchall()
        assert answer == [(2, "update_after"), (2, "update_before"), (4, "insert")]
    finally:
        proc.kill()
        proc.wait()
    got = lakehouse.json("query", f"SELECT id, amount, _change FROM table_changes('{TABLE}', 'v1', 'main') "
                                  "ORDER BY id, _change")
    assert got == [
        {"id": 2, "amount": 20.0, "_change": "update_after"},
        {"id": 2, "amount": 2.0, "_change": "update_before"},
        {"id": 4, "amount": 4.0, "_change": "insert"},
    ]
    # `basin diff --rows` prints the same rows.
    diffed = lakehouse.json("diff", "v1", "main", "--rows", "--table", TABLE)
    assert sorted((r["id"], r["_change"]) for r in diffed[TABLE]) == [(2, "update_after"), (2, "update_before"), (4, "insert")]

    for sql, words in [
        (f"SELECT * FROM table_changes('sales.nope', 'v1', 'main')", "`sales.nope` is on neither"),
        (f"SELECT * FROM table_changes('{TABLE}', 'v9', 'main')", "v9"),
        (f"SELECT * FROM table_changes('{TABLE}', '123', 'main')", "snapshot 123 is not in the history"),
        (f"SELECT * FROM table_changes('{TABLE}')", "takes 2 or 3 arguments"),
    ]:
        out = lakehouse.run("query", sql, check=False)
        assert out.returncode != 0 and words in out.stderr, (sql, out.stderr)
        assert "hint:" in out.stderr, out.stderr
