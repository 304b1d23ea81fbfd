"""Commit triggers end to end: a function deployed with `@basin.on_commit` keeps a running
ledger of a table's changes (`context.changes()`), fed by imports, a replacing import and a
merge while `basin serve` runs and is SIGKILLed three times; the ledger converges to a full
recompute, each change counted once. A chain of triggers feeding itself is refused."""

import json
import signal

from conftest import start_server, wait_for
from test_ingest_postgres import db, postgres  # noqa: F401 (fixtures)

LEDGER = '''
import basin
import pyarrow as pa
import pyarrow.compute as pc


@basin.python("3.11", timeout="30s")
@basin.on_commit("sales.orders", to="mart.ledger", batch_size=5)
def ledger(event, context):
    changes = context.changes()
    gone = pc.is_in(changes["_change"], pa.array(["delete", "update_before"]))
    return pa.table({
        "id": changes["id"],
        "amount": changes["amount"],
        "sign": pc.if_else(gone, -1, 1).cast(pa.int64()),
        "snapshot": pc.cast(changes["_snapshot_id"], pa.int64()),
    })
'''

BACK = '''
import basin


@basin.on_commit("mart.ledger", to="sales.orders")
def back(event, context):
    return context.changes()
'''


def csv(tmp_path, name, ids):
    path = tmp_path / name
    path.write_text("id,amount\n" + "".join(f"{i},{i * 2}\n" for i in ids))
    return str(path)


def totals(lakehouse, sql):
    return json.loads(lakehouse("query", sql, "--format", "json"))


def settled(lakehouse):
    events = json.loads(lakehouse("events", "ls", "-n", "10000", "--format", "json"))
    return all(e["state"] == "succeeded" for e in events), len(events)


def test_a_ledger_of_changes_converges_to_a_recompute_across_sigkills(lakehouse, tmp_path):
    lakehouse("import", csv(tmp_path, "first.csv", range(1, 6)), "--table", "sales.orders")
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "ledger.py").write_text(LEDGER)
    lakehouse("deploy", str(functions))
    shown = json.loads(lakehouse("functions", "ls", "--format", "json"))
    assert [f["trigger"] for f in shown] == ["commit sales.orders@main"], shown

    writes = [
        lambda: lakehouse("import", csv(tmp_path, "a.csv", range(6, 11)), "--table", "sales.orders"),
        lambda: lakehouse("import", csv(tmp_path, "b.csv", [3, 3, 11]), "--table", "sales.orders"),
        lambda: lakehouse("import", csv(tmp_path, "c.csv", range(20, 26)), "--table", "sales.orders",
                          "--mode", "replace"),
        lambda: (lakehouse("branch", "create", "dev"),
                 lakehouse("import", csv(tmp_path, "d.csv", [30, 31]), "--table", "sales.orders", "--branch", "dev"),
                 lakehouse("merge", "dev")),
        lambda: lakehouse("import", csv(tmp_path, "e.csv", range(40, 44)), "--table", "sales.orders"),
        lambda: lakehouse("import", csv(tmp_path, "f.csv", [50]), "--table", "sales.orders"),
    ]
    base, server = start_server(lakehouse, "--no-auth")
    try:
        for i, write in enumerate(writes):
            write()
            if i % 2 == 1:  # three kills, each with work in flight or queued
                server.send_signal(signal.SIGKILL)
                server.wait()
                base, server = start_server(lakehouse, "--no-auth")
        expected = totals(lakehouse, "SELECT count(*) AS n, sum(amount) AS total FROM sales.orders")[0]
        # What the table held when the function was deployed stays out of the ledger.
        ledger_sql = ("SELECT sum(sign) + 5 AS n, sum(sign * amount) + 30 AS total FROM mart.ledger")

        def converged():
            tables = [t["table"] for t in json.loads(lakehouse("table", "ls", "--format", "json"))]
            return "mart.ledger" in tables and totals(lakehouse, ledger_sql)[0] == expected and settled(lakehouse)[0]

        wait_for(converged, 240, show=lambda: lakehouse("events", "ls"))
    finally:
        server.kill()
        server.wait()
    done, events = settled(lakehouse)
    assert done and events >= 3, events
    # Every event names the range of snapshots it stood for.
    listed = json.loads(lakehouse("events", "ls", "-n", "100", "--format", "json"))
    assert all(e["payload"]["type"] == "commit" and e["payload"]["to_snapshot"] for e in listed), listed


def test_a_chain_of_commit_triggers_feeding_itself_is_refused(lakehouse, tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "ledger.py").write_text(LEDGER)
    (functions / "back.py").write_text(BACK)
    out = lakehouse.run("deploy", str(functions), check=False)
    assert out.returncode != 0, out.stdout
    assert "`back` -> `ledger`" in out.stderr or "`ledger` -> `back`" in out.stderr, out.stderr
    assert "hint:" in out.stderr
    assert json.loads(lakehouse("functions", "ls", "--format", "json")) == []
    # One function writing what it watches is refused where it is declared.
    (functions / "back.py").write_text(BACK.replace('to="sales.orders"', 'to="mart.ledger"'))
    out = lakehouse.run("deploy", str(functions), check=False)
    assert out.returncode != 0 and "cannot write the table it watches" in out.stderr, out.stderr


ITEMS_LEDGER = '''
import basin
import pyarrow as pa
import pyarrow.compute as pc


@basin.python("3.11", timeout="60s")
@basin.on_commit("shop.items", to="mart.ledger", batch_size=20)
def ledger(event, context):
    changes = context.changes()
    gone = pc.is_in(changes["_change"], pa.array(["delete", "update_before"]))
    return pa.table({
        "id": changes["id"],
        "qty": changes["qty"].cast(pa.int64()),
        "sign": pc.if_else(gone, -1, 1).cast(pa.int64()),
    })
'''


def test_cdc_and_pyiceberg_commits_fire_a_ledger_that_converges_across_sigkills(lakehouse, db, tmp_path):
    """Postgres CDC -> shop.items -> a commit-triggered function -> mart.ledger, with a
    concurrent writer at the source and the server SIGKILLed three times; then an append by
    PyIceberg over Iceberg REST fires it too."""
    import time

    import pyarrow as pa
    from pyiceberg.catalog.rest import RestCatalog
    from test_cdc_postgres import CDC, SCHEMA, Writer, wait_equal
    from test_ingest_postgres import declare

    pg, name, conn = db
    conn.execute(SCHEMA)
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "ledger.py").write_text(ITEMS_LEDGER)
    lakehouse("deploy", str(functions))
    # The watcher's first look, before the table exists: the full load is a change too.
    base, server = start_server(lakehouse, "--no-auth")
    time.sleep(2)
    server.kill()
    server.wait()

    declare(lakehouse, pg, name, ["public.items"], extra=CDC)
    writer = Writer(pg, name, seed=7)
    base, server = start_server(lakehouse, "--no-auth")
    try:
        writer.start()
        for _ in range(3):
            time.sleep(3)
            server.send_signal(signal.SIGKILL)
            server.wait()
            base, server = start_server(lakehouse, "--no-auth")
        writer.stop()
        assert writer.transactions > 10, writer.transactions
        wait_equal(conn, lakehouse, 120)

        by_group = ("SELECT id % 10 AS g, {n} AS n, {q} AS q FROM {t} GROUP BY id % 10 ORDER BY g")
        table = by_group.format(n="count(*)", q="sum(qty)", t="shop.items")
        ledger = by_group.format(n="sum(sign)", q="sum(sign * qty)", t="mart.ledger")

        def converged():
            tables = [t["table"] for t in json.loads(lakehouse("table", "ls", "--format", "json"))]
            return ("mart.ledger" in tables and totals(lakehouse, ledger) == totals(lakehouse, table)
                    and settled(lakehouse)[0])

        wait_for(converged, 240, show=lambda: lakehouse("events", "ls"))

        # Another engine's commit fires it as well.
        catalog = RestCatalog("basin", uri=base, warehouse="main")
        items = catalog.load_table("shop.items")
        row = {f.name: None for f in items.schema().fields}
        row.update({"id": 99_000_001, "label": "pyiceberg", "qty": 7})
        items.append(pa.Table.from_pylist([row], schema=items.schema().as_arrow()))
        wait_for(converged, 120, show=lambda: lakehouse("events", "ls"))
        assert totals(lakehouse, "SELECT sum(sign) AS n FROM mart.ledger WHERE id = 99000001") == [{"n": 1}]
    finally:
        server.kill()
        server.wait()
