"""Issue #15's evidence: snapshot expiry and history retention, then `basin gc`, on three
branches and a tag sharing files. Every ref reads exactly what it read (Basin and PyIceberg
through the REST catalog), and the files only the expired snapshots and removed commits read
are gone from disk."""

import os
import time

import pytest
from pathlib import Path

from pyiceberg.catalog.rest import RestCatalog

from conftest import start_server

TABLES = ["sales.orders", "sales.items"]
REFS = ["main", "grow", "v1", "swap"]


def reads(lakehouse, ref, table):
    """Row count and an order-independent digest of `table` at `ref`."""
    out = lakehouse("query", f"SELECT count(*) AS n, sum(id * 7919 + amount) AS digest FROM {table}",
                    "--ref", ref, "--format", "csv")
    return out.splitlines()[1]


def files_under(folder: Path):
    return {p for p in folder.rglob("*") if p.is_file()}


def age_everything(folder: Path):
    hours_ago = time.time() - 2 * 3600
    for path in files_under(folder):
        os.utime(path, (hours_ago, hours_ago))


def snapshots(lakehouse, table, ref):
    return lakehouse.json("table", "show", table, "--ref", ref)["snapshots"]


def test_expiry_history_retention_and_gc_keep_what_every_ref_reads(lakehouse, tmp_path):
    def csv(name, first, count):
        path = tmp_path / name
        path.write_text("id,amount\n" + "".join(f"{i},{i}.25\n" for i in range(first, first + count)))
        return str(path)

    for table in TABLES:
        lakehouse("import", csv("base.csv", 1, 3), "--table", table)
    lakehouse("import", csv("main2.csv", 10, 2), "--table", "sales.orders")
    # grow: appends, then tagged. swap: appends a file only it ever reads, then replaces all.
    lakehouse("branch", "create", "grow")
    lakehouse("import", csv("grow.csv", 20, 2), "--table", "sales.orders", "--branch", "grow")
    lakehouse("import", csv("grow2.csv", 30, 1), "--table", "sales.items", "--branch", "grow")
    lakehouse("tag", "create", "v1", "--at", "grow")
    lakehouse("import", csv("grow3.csv", 40, 1), "--table", "sales.orders", "--branch", "grow")
    lakehouse("branch", "create", "swap", "--from", "main")
    location = Path(lakehouse.json("table", "show", "sales.orders")["location"])
    before_swap_append = files_under(location)
    lakehouse("import", csv("swap.csv", 50, 2), "--table", "sales.orders", "--branch", "swap")
    only_swap = {p for p in files_under(location) - before_swap_append if p.suffix in (".parquet", ".avro")}
    assert any(p.suffix == ".parquet" for p in only_swap) and any(p.suffix == ".avro" for p in only_swap)
    lakehouse("import", csv("swap2.csv", 60, 4), "--table", "sales.orders", "--branch", "swap",
              "--mode", "replace")
    lakehouse("import", csv("main3.csv", 70, 1), "--table", "sales.orders")

    before = {(ref, t): reads(lakehouse, ref, t) for ref in REFS for t in TABLES}
    assert len({before[(ref, "sales.orders")] for ref in REFS}) == 4, before

    base, server = start_server(lakehouse, "--no-auth")
    try:
        # A table property overrides [maintenance]: sales.items on main keeps its newest 2.
        lakehouse("import", csv("items2.csv", 80, 1), "--table", "sales.items")
        lakehouse("import", csv("items3.csv", 90, 1), "--table", "sales.items")
        before[("main", "sales.items")] = reads(lakehouse, "main", "sales.items")
        items = RestCatalog("basin", uri=base, warehouse="main").load_table("sales.items")
        with items.transaction() as tx:
            tx.set_properties({"history.expire.min-snapshots-to-keep": "2"})

        (lakehouse.home / "basin.toml").write_text(
            '[maintenance]\nkeep_snapshots = "1ms"\nkeep_last = 1\nkeep_history = "1ms"\n')
        time.sleep(0.01)
        tagged = lakehouse.json("table", "show", "sales.orders", "--ref", "v1")["current_snapshot_id"]
        dry = lakehouse.json("table", "expire", "sales.orders", "--branch", "grow", "--dry-run")
        assert dry["snapshots_expired"] >= 1 and dry["kept_for_tags"] == 1, dry
        for branch in ["main", "grow", "swap"]:
            for table in TABLES:
                lakehouse("table", "expire", table, "--branch", branch)
        assert len(snapshots(lakehouse, "sales.orders", "main")) == 1
        assert len(snapshots(lakehouse, "sales.items", "main")) == 2, "the table property keeps 2"
        assert len(snapshots(lakehouse, "sales.orders", "swap")) == 1
        grow = [s["snapshot_id"] for s in snapshots(lakehouse, "sales.orders", "grow")]
        assert len(grow) == 2 and tagged in grow, "the snapshot the tag reads stays on grow"

        # Expiry frees nothing by itself: earlier commits still read those snapshots.
        age_everything(lakehouse.home / ".basin")
        age_everything(location.parent.parent)
        dry = lakehouse.json("gc", "--dry-run")
        assert dry["history_commits_removed"] > 0 and dry["files_removed"] > 0, dry
        assert all(p.exists() for p in only_swap)
        report = lakehouse.json("gc")
        assert report["history_commits_removed"] == dry["history_commits_removed"], report
        assert report["files_removed"] == dry["files_removed"], report

        # The files only swap's expired snapshot read are gone; every ref reads what it read.
        assert not any(p.exists() for p in only_swap), sorted(p.name for p in only_swap if p.exists())
        after = {(ref, t): reads(lakehouse, ref, t) for ref in REFS for t in TABLES}
        assert after == before
        assert "history before" in lakehouse("log", "swap")
        for ref in REFS:
            catalog = RestCatalog("basin", uri=base, warehouse=ref)
            for table in TABLES:
                data = catalog.load_table(table).scan().to_arrow()
                n, digest = before[(ref, table)].split(",")
                assert data.num_rows == int(n), (ref, table)
                got = sum(i * 7919 + float(a) for i, a in zip(data["id"].to_pylist(), data["amount"].to_pylist()))
                assert abs(got - float(digest)) < 1e-6, (ref, table, got, digest)
        assert lakehouse.json("gc")["files_removed"] == 0
    finally:
        server.kill()
        server.wait()
