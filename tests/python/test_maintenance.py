"""`basin gc`: the warehouse's files no commit reads go, and nothing any ref reads does.
Real lakehouses, real Iceberg files (PyIceberg reads every table after the sweep)."""

import json
import os
import sqlite3
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import StaticTable

from conftest import BASIN, Basin, start_server, wait_for

HOURS_AGO = time.time() - 2 * 3600


def what_it_reads(lakehouse, ref):
    """Row count and an order-independent digest of sales.orders at `ref`."""
    out = lakehouse("query", "SELECT count(*) AS n, sum(id * 7919 + amount) AS digest FROM sales.orders",
                    "--ref", ref, "--format", "csv")
    return out.splitlines()[1]


def files_under(folder: Path):
    return {p for p in folder.rglob("*") if p.is_file()}


def age(path: Path):
    os.utime(path, (HOURS_AGO, HOURS_AGO))


def test_gc_removes_only_what_no_commit_reads(lakehouse, tmp_path):
    csv = tmp_path / "orders.csv"
    csv.write_text("id,amount\n1,10.50\n2,3.25\n")
    more = tmp_path / "more.csv"
    more.write_text("id,amount\n3,7.00\n")
    other = tmp_path / "other.csv"
    other.write_text("id,amount\n9,1.00\n")
    lakehouse("import", str(csv), "--table", "sales.orders")
    # Three branches and a tag sharing files; one branch replaces every row.
    lakehouse("branch", "create", "grow")
    lakehouse("import", str(more), "--table", "sales.orders", "--branch", "grow")
    lakehouse("tag", "create", "v1", "--at", "grow")
    lakehouse("branch", "create", "swap")
    lakehouse("import", str(other), "--table", "sales.orders", "--branch", "swap", "--mode", "replace")
    refs = ["main", "grow", "v1", "swap"]
    before = {ref: what_it_reads(lakehouse, ref) for ref in refs}
    assert len(set(before.values())) == 3, before

    location = Path(lakehouse.json("table", "show", "sales.orders")["location"])
    committed = files_under(location)
    # What failed writes leave: a data file and a metadata file no commit names, from two
    # hours ago; one from just now (a write in flight); and a file that is no table file.
    data = next(p for p in committed if p.suffix == ".parquet")
    orphan = data.with_name("orphan-from-a-killed-import.parquet")
    shutil.copy(data, orphan)
    orphan_metadata = location / "metadata" / "99999-orphan.metadata.json"
    orphan_metadata.write_text("{}")
    in_flight = data.with_name("written-a-moment-ago.parquet")
    shutil.copy(data, in_flight)
    notes = location / "notes.txt"
    notes.write_text("not a table file")
    for old in (orphan, orphan_metadata, notes):
        age(old)

    dry = lakehouse.json("gc", "--dry-run")
    assert dry["dry_run"] and dry["files_removed"] == 2, dry
    assert orphan.exists() and orphan_metadata.exists()

    report = lakehouse.json("gc")
    assert report["files_removed"] == 2 and report["files_too_young"] == 1, report
    assert report["files_reachable"] == len([p for p in committed if p.suffix in (".parquet", ".avro", ".json")])
    assert sorted(report["removed_sample"]) == sorted([str(orphan), str(orphan_metadata)])
    assert not orphan.exists() and not orphan_metadata.exists()
    assert in_flight.exists() and notes.exists()
    assert committed <= files_under(location)

    # Every ref and tag reads exactly what it read, through Basin and through PyIceberg.
    assert {ref: what_it_reads(lakehouse, ref) for ref in refs} == before
    for ref in refs:
        show = lakehouse.json("table", "show", "sales.orders", "--ref", ref)
        rows = StaticTable.from_metadata(show["metadata_location"]).scan().to_arrow().num_rows
        assert rows == int(before[ref].split(",")[0])

    # A second gc finds nothing more to remove.
    assert lakehouse.json("gc")["files_removed"] == 0


def test_gc_refuses_a_grace_period_too_short_for_a_write_in_flight(lakehouse):
    out = lakehouse.run("gc", "--grace", "10s", check=False)
    assert out.returncode == 1
    assert "write in flight" in out.stderr and "hint: use --grace 1m or more" in out.stderr


def test_gc_racing_an_import_never_removes_its_files(lakehouse, tmp_path):
    n = 2_000_000
    source = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": pa.array(range(n), pa.int64())}), source, row_group_size=100_000)
    importing = subprocess.Popen([BASIN, "--home", str(lakehouse.home), "import", str(source), "--table", "big.ids"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reports = []
    stop = threading.Event()

    def collect():
        while not stop.is_set():
            reports.append(lakehouse.json("gc", "--grace", "1m"))

    collector = threading.Thread(target=collect)
    collector.start()
    _, err = importing.communicate(timeout=300)
    stop.set()
    collector.join()
    assert importing.returncode == 0, err
    assert reports and all(r["files_removed"] == 0 for r in reports), reports
    count = lakehouse("query", "SELECT count(*) AS n FROM big.ids", "--format", "csv").splitlines()[1]
    assert int(count) == n


def test_gc_prunes_basins_leftovers_as_maintenance_settings_say(lakehouse, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "basin.toml").write_text('[project]\nname = "p"\nnamespace = "shop"\n')
    (project / "one.sql").write_text("SELECT 1 AS one\n")
    first = lakehouse.json("run", str(project))  # an entry in the run cache
    lakehouse("run", str(project), "--dry-run", "--no-cache")  # keeps its branch
    dry_branch = next(b["name"] for b in lakehouse.json("branch", "ls", "--all") if b["name"].startswith("run/"))
    # A replay kept for a look: `replay/<id>` and the replay's own (dry) run branch.
    lakehouse("runs", "replay", first["id"], "--keep-branch")
    kept_branches = {b["name"] for b in lakehouse.json("branch", "ls", "--all")} - {"main"}
    assert len(kept_branches) == 3 and f"replay/{first['id']}" in kept_branches, kept_branches
    upload = lakehouse.home / ".basin" / "uploads" / "left-by-a-dead-request"
    upload.mkdir(parents=True)
    two_days_ago = time.time() - 2 * 86400
    os.utime(upload, (two_days_ago, two_days_ago))

    # Defaults: a month of cache, a week of run branches, a day of uploads.
    kept = lakehouse.json("gc")
    assert (kept["cache_entries_removed"], kept["run_branches_removed"], kept["uploads_removed"]) == (0, [], 1)
    assert not upload.exists()

    (lakehouse.home / "basin.toml").write_text('[maintenance]\nkeep_cache = "1s"\nkeep_run_branches = "1s"\n')
    time.sleep(1.5)
    dry = lakehouse.json("gc", "--dry-run")
    assert dry["cache_entries_removed"] >= 1 and set(dry["run_branches_removed"]) == kept_branches, dry
    assert dry_branch in kept_branches
    report = lakehouse.json("gc")
    assert set(report["run_branches_removed"]) == kept_branches
    assert [b["name"] for b in lakehouse.json("branch", "ls", "--all")] == ["main"]
    cache = lakehouse.home / ".basin" / "cache" / "models"
    assert not list(cache.glob("*.json"))
    # The run's record stays, and the project runs again (its model, no longer cached).
    assert len(lakehouse.json("runs", "ls")) == 3
    again = lakehouse.json("run", str(project))
    assert again["models"][0]["cache_hit"] is False


def test_a_run_whose_process_died_is_settled_by_what_the_catalog_shows(lakehouse, tmp_path):
    """A `basin run` killed mid-model leaves its record `running`; once its lease (renewed by
    the running process) runs out, `basin runs` says it failed, `main` untouched, and gc
    collects its branch as a failed run's. A run killed after its merge but before its last
    save (simulated by putting its record back to `running`) is settled as succeeded, with
    its merge commit."""
    (lakehouse.home / "basin.toml").write_text('[functions]\nevent_lease = "2s"\n')
    project = tmp_path / "project"
    project.mkdir()
    (project / "basin.toml").write_text('[project]\nname = "p"\nnamespace = "shop"\n')
    (project / "slow.py").write_text(
        "import time\n\nimport basin\nimport pyarrow as pa\n\n\n"
        "@basin.python(\"3.11\", timeout=\"2m\")\n@basin.model()\n"
        "def slow():\n    time.sleep(60)\n    return pa.table({'x': [1]})\n")
    head = lakehouse.json("log", "main")[0]["id"]
    proc = subprocess.Popen([BASIN, "--home", str(lakehouse.home), "run", str(project)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: [r["status"] for r in lakehouse.json("runs", "ls")] == ["running"], 120)
    # Alive and renewing its lease: still running, whoever looks.
    time.sleep(3)
    assert [r["status"] for r in lakehouse.json("runs", "ls")] == ["running"]
    proc.kill()
    proc.wait()
    wait_for(lambda: lakehouse.json("runs", "ls")[0]["status"] != "running", 30)
    run = lakehouse.json("runs", "ls")[0]
    assert run["status"] == "failed" and "abandoned" in run["error"] and run["finished_at_ms"], run
    assert lakehouse.json("log", "main")[0]["id"] == head
    assert run["branch"] in {b["name"] for b in lakehouse.json("branch", "ls", "--all")}
    (lakehouse.home / "basin.toml").write_text('[functions]\nevent_lease = "2s"\n[maintenance]\nkeep_run_branches = "1s"\n')
    time.sleep(1.5)
    assert lakehouse.json("gc")["run_branches_removed"] == [run["branch"]]

    (project / "slow.py").unlink()
    (project / "fast.sql").write_text("SELECT 1 AS one\n")
    done = lakehouse.json("run", str(project))
    assert done["status"] == "succeeded" and done["merged_commit"]
    with sqlite3.connect(lakehouse.home / ".basin" / "catalog.db") as db:
        record = json.loads(db.execute("SELECT record FROM runs WHERE id = ?", (done["id"],)).fetchone()[0])
        record.update(status="running", merged_commit=None, finished_at_ms=None)
        db.execute("UPDATE runs SET record = ? WHERE id = ?", (json.dumps(record), done["id"]))
    time.sleep(2.5)  # the lease the run held runs out
    # Read from afar: the server settles it too.
    base, server = start_server(lakehouse, "--no-auth")
    try:
        remote = Basin(lakehouse.home, {**lakehouse.env, "BASIN_REMOTE": base})
        settled = remote.json("runs", "show", done["id"])
    finally:
        server.kill()
        server.wait()
    assert (settled["status"], settled["merged_commit"], settled["error"]) == ("succeeded", done["merged_commit"], None)
    # Every run's lease ends with it (the runner's and the settler's): none is left behind.
    with sqlite3.connect(lakehouse.home / ".basin" / "catalog.db") as db:
        assert db.execute("SELECT name FROM leases WHERE name LIKE 'run:%'").fetchall() == []


def test_compaction_rewrites_small_files_into_one_commit_with_the_same_rows(lakehouse, tmp_path):
    for i in range(40):
        row = tmp_path / f"r{i}.csv"
        row.write_text(f"id,amount,name\n{i},{i}.25,n{i}\n")
        lakehouse("import", str(row), "--table", "sales.orders")
    lakehouse("tag", "create", "before")
    digest = lambda ref: what_it_reads(lakehouse, ref)
    before = digest("main")
    commits = len(lakehouse.json("log", "main", "-n", "100"))

    dry = lakehouse.json("table", "compact", "sales.orders", "--dry-run")
    assert (dry["files_before"], dry["files_after"], dry["commit"]) == (40, 1, None)
    report = lakehouse.json("table", "compact", "sales.orders")
    assert (report["files_before"], report["files_after"], report["rows"]) == (40, 1, 40)
    assert report["files_rewritten"] == 40 and report["target_file_size"] == 128 * 1024 * 1024
    assert len(lakehouse.json("log", "main", "-n", "100")) == commits + 1
    assert digest("main") == before == digest("before")
    show = lakehouse.json("table", "show", "sales.orders")
    assert show["data_files"] == 1 and show["snapshots"][-1]["operation"] == "replace"
    assert StaticTable.from_metadata(show["metadata_location"]).scan().to_arrow().num_rows == 40
    # The tag still reads the 40 small files, and gc keeps them for it.
    assert lakehouse.json("table", "show", "sales.orders", "--ref", "before")["data_files"] == 40
    assert lakehouse.json("gc")["files_removed"] == 0
    assert digest("before") == before
    # Nothing left to do.
    assert lakehouse.json("table", "compact", "sales.orders")["commit"] is None


def test_compaction_rewrites_only_the_small_files_at_the_target_size(lakehouse, tmp_path):
    big = tmp_path / "big.csv"
    big.write_text("id,amount,name\n" + "".join(f"{i},{i}.25,name-{i * 7919 % 100003}\n" for i in range(50_000)))
    lakehouse("import", str(big), "--table", "sales.orders")
    for i in range(5):
        row = tmp_path / f"r{i}.csv"
        row.write_text(f"id,amount,name\n{100_000 + i},{i}.25,n{i}\n")
        lakehouse("import", str(row), "--table", "sales.orders")
    before = what_it_reads(lakehouse, "main")
    location = Path(lakehouse.json("table", "show", "sales.orders")["location"])
    sizes = {p: p.stat().st_size for p in location.rglob("*.parquet")}
    big_file = max(sizes, key=sizes.get)
    # At a target just above the big file, it counts as full (over 3/4 of it): left alone.
    target = str(sizes[big_file] + 1)
    dry = lakehouse.json("table", "compact", "sales.orders", "--target-file-size", target, "--dry-run")
    assert (dry["files_before"], dry["files_rewritten"], dry["files_after"]) == (6, 5, 2), dry
    report = lakehouse.json("table", "compact", "sales.orders", "--target-file-size", target)
    assert (report["files_rewritten"], report["rows"], report["files_after"]) == (5, 5, 2), report
    assert report["target_file_size"] == sizes[big_file] + 1
    assert what_it_reads(lakehouse, "main") == before
    show = lakehouse.json("table", "show", "sales.orders")
    assert show["data_files"] == 2 and show["rows"] == 50_005
    assert StaticTable.from_metadata(show["metadata_location"]).scan().to_arrow().num_rows == 50_005
    # The big file is still the one the table reads; at twice its size it is small too.
    assert big_file.exists()
    twice = lakehouse.json("table", "compact", "sales.orders", "--target-file-size", str(2 * sizes[big_file]))
    assert (twice["files_rewritten"], twice["files_after"]) == (2, 1), twice
    assert what_it_reads(lakehouse, "main") == before
    bad = lakehouse.run("table", "compact", "sales.orders", "--target-file-size", "big", check=False)
    assert bad.returncode != 0 and "is not a size" in bad.stderr and "hint:" in bad.stderr


def test_gc_removes_environments_unused_for_keep_envs(tmp_path):
    """Environments live in the user's cache (here a folder of the test's own), shared by
    every lakehouse; gc removes those no invocation used for `keep_envs` (30 days)."""
    from conftest import Basin
    cache = tmp_path / "cache"
    home = tmp_path / "lh"
    subprocess.run([BASIN, "init", str(home)], check=True, capture_output=True)
    lakehouse = Basin(home, env={"BASIN_CACHE_DIR": str(cache)})

    def env(name, days_ago):
        folder = cache / "envs" / name
        folder.mkdir(parents=True)
        (folder / "lib.py").write_text("x = 1\n" * 1000)
        marker = folder / "basin-env.json"
        marker.write_text(f'{{"hash": "{name}", "spec": {{"python": "3.11", "packages": {{}}}}, "built_at_ms": 0}}')
        then = time.time() - days_ago * 86400
        os.utime(marker, (then, then))

    env("a" * 16, 45)
    env("b" * 16, 2)
    assert {e["hash"] for e in lakehouse.json("env", "ls")} == {"a" * 16, "b" * 16}
    dry = lakehouse.json("gc", "--dry-run")
    assert dry["envs_removed"] == ["a" * 16]
    assert (cache / "envs" / ("a" * 16)).exists()
    assert lakehouse.json("gc")["envs_removed"] == ["a" * 16]
    assert [e["hash"] for e in lakehouse.json("env", "ls")] == ["b" * 16]
    (home / "basin.toml").write_text('[maintenance]\nkeep_envs = "1d"\n')
    assert lakehouse.json("gc")["envs_removed"] == ["b" * 16]
    (home / "basin.toml").write_text('[maintenance]\nkeep_envs = "off"\n')
    env("c" * 16, 400)
    assert lakehouse.json("gc")["envs_removed"] == []


def test_compaction_sorts_the_rows_and_keeps_the_order_as_the_tables(lakehouse, tmp_path):
    import random
    ids = list(range(40_000))
    random.Random(7).shuffle(ids)
    for part in range(4):
        path = tmp_path / f"p{part}.csv"
        chunk = ids[part * 10_000:(part + 1) * 10_000]
        path.write_text("id,amount,name\n" + "".join(f"{i},{i % 97}.25,n{i % 13}\n" for i in chunk))
        lakehouse("import", str(path), "--table", "sales.orders")
    before = what_it_reads(lakehouse, "main")

    bad = lakehouse.run("table", "compact", "sales.orders", "--sort-by", "qqqq", check=False)
    assert bad.returncode != 0 and "no column `qqqq`" in bad.stderr and "id, amount, name" in bad.stderr
    typo = lakehouse.run("table", "compact", "sales.orders", "--sort-by", "amout", check=False)
    assert typo.returncode != 0 and "did you mean `amount`?" in typo.stderr, typo.stderr
    report = lakehouse.json("table", "compact", "sales.orders", "--sort-by", "id", "--target-file-size", "64KiB")
    assert report["files_rewritten"] == 4 and report["rows"] == 40_000 and report["sorted_by"] == ["id"]
    assert report["files_after"] > 1, "small target files: several sorted files"
    assert what_it_reads(lakehouse, "main") == before
    show = lakehouse.json("table", "show", "sales.orders")
    assert show["sort_order"] == ["id ASC NULLS FIRST"], show["sort_order"]
    assert "sorted by  id ASC NULLS FIRST" in lakehouse("table", "show", "sales.orders")

    # PyIceberg sees the sort order, and each file holds one range of ids, in order.
    table = StaticTable.from_metadata(show["metadata_location"])
    assert [f.source_id for f in table.sort_order().fields] == [table.schema().find_field("id").field_id]
    ranges = []
    for task in table.scan().plan_files():
        ids_in_file = pq.read_table(task.file.file_path.removeprefix("file://")).column("id").to_pylist()
        assert ids_in_file == sorted(ids_in_file)
        ranges.append((ids_in_file[0], ids_in_file[-1]))
    ranges.sort()
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:])), ranges
    assert sum(1 for _ in ranges) == report["files_after"]

    # A query's filters prune the files by their id ranges before any is opened (the
    # manifests' column bounds): one file for one id, and still the right answers.
    plan = lakehouse("query", "EXPLAIN SELECT count(*) AS n FROM sales.orders WHERE id = 123", "--format", "csv")
    assert plan.count(".parquet") == 1, plan
    everything = lakehouse("query", "EXPLAIN SELECT count(*) AS n FROM sales.orders WHERE amount > 0", "--format", "csv")
    assert everything.count(".parquet") == report["files_after"], everything
    q = lambda sql: lakehouse("query", sql, "--format", "csv").splitlines()[1]
    assert q("SELECT count(*) AS n FROM sales.orders WHERE id = 123") == "1"
    assert q("SELECT count(*) AS n FROM sales.orders WHERE id BETWEEN 100 AND 20000") == "19901"
    assert q("SELECT count(*) AS n FROM sales.orders WHERE id > 39990 OR name = 'n3'") == str(
        sum(1 for i in range(40_000) if i > 39990 or i % 13 == 3))
    assert q("SELECT count(*) AS n FROM sales.orders WHERE id < 0") == "0"

    # Later appends, compacted without --sort-by: sorted by the table's order all the same.
    for part, chunk in enumerate([[45_000, 41_000, 43_000], [44_000, 40_000, 42_000]]):
        path = tmp_path / f"late{part}.csv"
        path.write_text("id,amount,name\n" + "".join(f"{i},1.25,late\n" for i in chunk))
        lakehouse("import", str(path), "--table", "sales.orders")
    late = lakehouse.json("table", "compact", "sales.orders", "--target-file-size", "64KiB")
    assert late["files_rewritten"] >= 2 and late["sorted_by"] == ["id"], late
    table = StaticTable.from_metadata(lakehouse.json("table", "show", "sales.orders")["metadata_location"])
    for task in table.scan().plan_files():
        ids_in_file = pq.read_table(task.file.file_path.removeprefix("file://")).column("id").to_pylist()
        assert ids_in_file == sorted(ids_in_file), ids_in_file[:10]
    assert lakehouse("query", "SELECT count(*) AS n FROM sales.orders", "--format", "csv") == "n\n40006\n"
