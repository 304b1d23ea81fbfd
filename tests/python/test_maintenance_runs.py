"""Maintenance runs (issue #15): `basin maintenance run` compacts the tables with many small
files, expires snapshots and runs gc on every branch people write to, records what it did
(`basin maintenance ls`), and records a failed step by name while the others still run;
`basin serve` runs the same on `[maintenance] schedule` and counts it in /metrics."""

import os
import time
import urllib.request
from pathlib import Path

from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.table import StaticTable

from conftest import start_server, wait_for

SETTINGS = '[maintenance]\nkeep_snapshots = "1ms"\nkeep_history = "1ms"\ncompact_min_files = 8\n'


def reads(lakehouse, ref, table="sales.orders"):
    out = lakehouse("query", f"SELECT count(*) AS n, sum(id * 7919 + amount) AS digest FROM {table}",
                    "--ref", ref, "--format", "csv")
    return out.splitlines()[1]


def appends(lakehouse, tmp_path, table, count, branch="main", first=0):
    for i in range(first, first + count):
        row = tmp_path / f"row{i}.csv"
        row.write_text(f"id,amount\n{i},{i}.25\n")
        lakehouse("import", str(row), "--table", table, "--branch", branch)


def age_everything(folder: Path):
    hours_ago = time.time() - 2 * 3600
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (hours_ago, hours_ago))


def test_a_maintenance_run_compacts_expires_and_collects_on_every_branch(lakehouse, tmp_path):
    appends(lakehouse, tmp_path, "sales.orders", 9)
    appends(lakehouse, tmp_path, "sales.items", 3)  # too few small files to compact
    lakehouse("branch", "create", "dev")
    appends(lakehouse, tmp_path, "sales.orders", 9, branch="dev", first=100)
    lakehouse("branch", "create", "run/x-1")
    lakehouse("import", str(tmp_path / "row0.csv"), "--table", "sales.orders", "--branch", "run/x-1")
    (lakehouse.home / "basin.toml").write_text(SETTINGS)
    before = {(ref, t): reads(lakehouse, ref, t) for ref in ["main", "dev"] for t in ["sales.orders", "sales.items"]}
    files = lambda ref, t="sales.orders": lakehouse.json("table", "show", t, "--ref", ref)["data_files"]
    assert (files("main"), files("dev"), files("run/x-1")) == (9, 18, 10)

    dry = lakehouse.json("maintenance", "run", "--dry-run")
    assert dry["status"] == "succeeded" and dry["dry_run"] and dry["trigger"] == "manual"
    assert sorted((c["branch"], c["table"], c["files_rewritten"]) for c in dry["compacted"]) == [
        ("dev", "sales.orders", 18), ("main", "sales.orders", 9)]
    assert (files("main"), files("dev")) == (9, 18), "a dry run changes nothing"

    age_everything(lakehouse.home)
    run = lakehouse.json("maintenance", "run")
    assert run["status"] == "succeeded" and run["errors"] == [], run["errors"]
    assert sorted((c["branch"], c["files_rewritten"], c["files_after"]) for c in run["compacted"]) == [
        ("dev", 18, 1), ("main", 9, 1)]
    assert {(e["branch"], e["table"]) for e in run["expired"]} >= {("main", "sales.orders"), ("dev", "sales.orders"),
                                                                   ("main", "sales.items")}
    assert all(e["branch"] != "run/x-1" for e in run["expired"]), "pipelines' own branches are left alone"
    gc = run["gc"]
    assert gc["history_commits_removed"] > 0 and gc["files_removed"] >= 27, gc
    assert (files("main"), files("dev"), files("run/x-1")) == (1, 1, 10)
    after = {(ref, t): reads(lakehouse, ref, t) for ref in ["main", "dev"] for t in ["sales.orders", "sales.items"]}
    assert after == before
    for ref in ["main", "dev", "run/x-1"]:
        show = lakehouse.json("table", "show", "sales.orders", "--ref", ref)
        assert StaticTable.from_metadata(show["metadata_location"]).scan().to_arrow().num_rows == show["rows"]

    listed = lakehouse.json("maintenance", "ls")
    assert [(r["id"], r["dry_run"]) for r in listed] == [(run["id"], False), (dry["id"], True)]
    table = lakehouse("maintenance", "ls")
    assert "started" in table and "succeeded" in table and "manual (dry run)" in table


def test_a_failed_step_is_recorded_by_name_and_the_others_still_run(lakehouse, tmp_path):
    appends(lakehouse, tmp_path, "sales.orders", 9)
    appends(lakehouse, tmp_path, "sales.items", 2)
    base, server = start_server(lakehouse, "--no-auth")
    try:
        items = RestCatalog("basin", uri=base, warehouse="main").load_table("sales.items")
        with items.transaction() as tx:
            tx.set_properties({"history.expire.min-snapshots-to-keep": "many"})
    finally:
        server.kill()
        server.wait()
    (lakehouse.home / "basin.toml").write_text(SETTINGS)
    out = lakehouse.run("maintenance", "run", check=False)
    assert out.returncode != 0
    assert "`sales.items` on `main`" in out.stderr and "min-snapshots-to-keep" in out.stderr, out.stderr
    assert "hint:" in out.stderr
    [run] = lakehouse.json("maintenance", "ls")
    assert run["status"] == "failed" and len(run["errors"]) == 1 and "sales.items" in run["errors"][0]
    assert [(c["table"], c["files_rewritten"]) for c in run["compacted"]] == [("sales.orders", 9)]
    assert run["gc"] is not None, "gc still ran"
    assert lakehouse.json("table", "show", "sales.orders")["data_files"] == 1


def test_serve_runs_maintenance_on_its_schedule_and_counts_it(lakehouse, tmp_path):
    appends(lakehouse, tmp_path, "sales.orders", 9)
    (lakehouse.home / "basin.toml").write_text(SETTINGS + 'schedule = "*/2 * * * * *"\n')
    base, server = start_server(lakehouse, "--no-auth")
    try:
        wait_for(lambda: any(r["trigger"] == "schedule" for r in lakehouse.json("maintenance", "ls")), 30)
        scheduled = [r for r in lakehouse.json("maintenance", "ls") if r["trigger"] == "schedule"]
        wait_for(lambda: all(r["status"] != "running" for r in lakehouse.json("maintenance", "ls")), 30)
        assert lakehouse.json("table", "show", "sales.orders")["data_files"] == 1
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'basin_maintenance_runs_total{status="succeeded"}' in metrics
        succeeded = next(line for line in metrics.splitlines()
                         if line.startswith('basin_maintenance_runs_total{status="succeeded"}'))
        assert int(succeeded.split()[-1]) >= 1, succeeded
        assert "basin_maintenance_files_compacted_total 9" in metrics, metrics
        api = urllib.request.urlopen(f"{base}/api/v1/maintenance").read().decode()
        assert scheduled[-1]["id"] in api
    finally:
        server.kill()
        server.wait()


def test_a_schedule_that_is_not_cron_is_refused_with_a_hint(lakehouse):
    (lakehouse.home / "basin.toml").write_text('[maintenance]\nschedule = "nightly"\n')
    out = lakehouse.run("maintenance", "ls", check=False)
    assert out.returncode != 0 and "[maintenance] schedule" in out.stderr and "hint:" in out.stderr, out.stderr
    (lakehouse.home / "basin.toml").write_text('[maintenance]\nschedule = "off"\ncompact_min_files = 1\n')
    out = lakehouse.run("maintenance", "ls", check=False)
    assert out.returncode != 0 and "compact_min_files" in out.stderr, out.stderr
