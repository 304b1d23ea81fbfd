"""`basin table add-files`: Parquet files that lie outside the warehouse become a table's
files in place, in one commit, with their statistics in the manifests (PyIceberg prunes by
them), a Hive folder becomes a partitioned table, and maintenance never deletes them."""

import json
import os
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import StaticTable

from conftest import start_server


def orders(start: int, count: int) -> pa.Table:
    ids = list(range(start, start + count))
    return pa.table({"id": pa.array(ids, pa.int64()), "amount": pa.array([i * 0.5 for i in ids]),
                     "region": pa.array(["eu" if i % 2 else "us" for i in ids])})


def metadata_of(lakehouse, table: str, ref: str = "main") -> StaticTable:
    return StaticTable.from_metadata(lakehouse.json("table", "show", table, "--ref", ref)["metadata_location"])


def refused(lakehouse, *args: str) -> str:
    result = lakehouse.run(*args, check=False)
    assert result.returncode != 0, result.stdout
    return result.stderr


def test_files_are_added_in_place_pruned_by_their_statistics_and_never_deleted(lakehouse, tmp_path):
    folder = tmp_path / "external" / "orders"
    folder.mkdir(parents=True)
    for part in range(4):
        pq.write_table(orders(part * 100, 100), folder / f"part-{part}.parquet")
    (folder / "_SUCCESS").write_text("")
    originals = {p: p.read_bytes() for p in folder.glob("*.parquet")}

    # Outside the warehouse, a folder must be allowed first.
    error = refused(lakehouse, "table", "add-files", "sales.orders", str(folder))
    assert "external_locations" in error and "part-0.parquet" in error, error

    (lakehouse.home / "basin.toml").write_text(
        f'[warehouse]\nexternal_locations = ["{tmp_path / "external"}"]\n')
    report = lakehouse.json("table", "add-files", "sales.orders", str(folder))
    assert (report["files"], report["rows"], report["created"]) == (4, 400, True), report
    answer = lakehouse.json("query", "SELECT count(*) AS n, sum(id) AS s FROM sales.orders")
    assert answer == [{"n": 400, "s": sum(range(400))}]

    # PyIceberg reads it, and the bounds taken from the footers prune a selective filter
    # to the one file that holds the rows.
    table = metadata_of(lakehouse, "sales.orders")
    assert table.scan().to_arrow().num_rows == 400
    planned = list(table.scan(row_filter="id >= 250 AND id < 260").plan_files())
    assert [Path(t.file.file_path).name for t in planned] == ["part-2.parquet"]
    assert lakehouse.json("query", "SELECT count(*) AS n FROM sales.orders WHERE id >= 250 AND id < 260") == [{"n": 10}]

    # Files that do not fit are refused, naming the file and the column; nothing changes.
    log_before = lakehouse.json("log")
    odd = tmp_path / "external" / "odd"
    odd.mkdir()
    pq.write_table(pa.table({"id": pa.array(["x"]), "amount": pa.array([1.0]), "region": pa.array(["eu"])}),
                   odd / "typed.parquet")
    error = refused(lakehouse, "table", "add-files", "sales.orders", str(odd / "typed.parquet"))
    assert "typed.parquet" in error and "`id`" in error and "hint:" in error, error
    pq.write_table(orders(900, 5).append_column("bogus", pa.array([1] * 5)), odd / "extra.parquet")
    error = refused(lakehouse, "table", "add-files", "sales.orders", str(odd / "extra.parquet"))
    assert "extra.parquet" in error and "`bogus`" in error, error
    error = refused(lakehouse, "table", "add-files", "sales.orders", str(folder / "part-1.parquet"))
    assert "already" in error, error
    assert lakehouse.json("log") == log_before

    # On a branch: invisible on main until merged.
    pq.write_table(orders(400, 50), odd / "more.parquet")
    lakehouse("branch", "create", "dev")
    lakehouse("table", "add-files", "sales.orders", str(odd / "more.parquet"), "--branch", "dev")
    count = lambda ref: lakehouse.json("query", "SELECT count(*) AS n FROM sales.orders", "--ref", ref)[0]["n"]
    assert (count("main"), count("dev")) == (400, 450)
    lakehouse("merge", "dev", "--into", "main")
    assert count("main") == 450

    # Compaction rewrites the rows into the warehouse; expiry and gc then drop what no
    # snapshot reads, and never touch the files outside.
    lakehouse("table", "compact", "sales.orders")
    time.sleep(1.1)
    lakehouse("table", "expire", "sales.orders", "--older-than", "1s")
    # Every file looks old enough to go, inside the warehouse and outside.
    old = time.time() - 7200
    for path in [*(tmp_path / "external").rglob("*"), *(lakehouse.home / ".basin").rglob("*.parquet")]:
        os.utime(path, (old, old))
    swept = lakehouse.json("gc", "--grace", "1m")
    # gc looks at the warehouse's files alone: the ones outside are never candidates.
    inside = [p for p in (lakehouse.home / ".basin" / "warehouse").rglob("*")
              if p.name.endswith((".parquet", ".avro", ".metadata.json"))]
    assert swept["files_found"] == len(inside), (swept, len(inside))
    assert {p: p.read_bytes() for p in folder.glob("*.parquet")} == originals
    assert (odd / "more.parquet").exists()
    assert lakehouse.json("query", "SELECT count(*) AS n, sum(id) AS s FROM sales.orders") == \
        [{"n": 450, "s": sum(range(450))}]


def test_a_hive_folder_becomes_a_table_partitioned_by_its_folders(lakehouse, tmp_path):
    root = tmp_path / "lake" / "clicks"
    expected = []
    for year in (2023, 2024):
        for month in ("01", "02"):
            folder = root / f"year={year}" / f"month={month}"
            folder.mkdir(parents=True)
            users = [year % 10, int(month), year * 100 + int(month)]
            pq.write_table(pa.table({"user": pa.array(users, pa.int32()), "url": [f"/{u}" for u in users]}),
                           folder / "data.parquet")
            expected += [{"user": u, "url": f"/{u}", "year": year, "month": int(month)} for u in users]
    (lakehouse.home / "basin.toml").write_text(f'[warehouse]\nexternal_locations = ["{tmp_path / "lake"}"]\n')

    # A glob below a partition folder still counts the folders it names.
    report = lakehouse.json("table", "add-files", "web.clicks", f"{root}/year=*/month=*/*.parquet")
    assert report["partitioned_by"] == ["year", "month"] and report["files"] == 4, report
    key = lambda r: (r["year"], r["month"], r["user"])
    got = lakehouse.json("query", "SELECT user, url, year, month FROM web.clicks")
    assert sorted(got, key=key) == sorted(expected, key=key)
    assert lakehouse.json("query", "SELECT count(*) AS n FROM web.clicks WHERE year = 2024 AND month = 2") == [{"n": 3}]

    # PyIceberg reads the partition values from the manifests, and prunes by them.
    table = metadata_of(lakehouse, "web.clicks")
    assert [f.name for f in table.spec().fields] == ["year", "month"]
    assert sorted(table.scan().to_arrow().to_pylist(), key=key) == sorted(expected, key=key)
    assert len(list(table.scan(row_filter="year = 2024").plan_files())) == 2

    # A later folder of the same layout adds to it; compaction keeps every value.
    later = root / "year=2025" / "month=01"
    later.mkdir(parents=True)
    pq.write_table(pa.table({"user": pa.array([7], pa.int32()), "url": ["/7"]}), later / "data.parquet")
    lakehouse("table", "add-files", "web.clicks", str(root / "year=2025"))
    lakehouse("table", "compact", "web.clicks")
    rows = lakehouse.json("query", "SELECT year, month, count(*) AS n FROM web.clicks GROUP BY 1, 2 ORDER BY 1, 2")
    assert rows == [{"year": 2023, "month": 1, "n": 3}, {"year": 2023, "month": 2, "n": 3},
                    {"year": 2024, "month": 1, "n": 3}, {"year": 2024, "month": 2, "n": 3},
                    {"year": 2025, "month": 1, "n": 1}], rows
    # A folder of another layout is refused.
    flat = tmp_path / "lake" / "flat"
    flat.mkdir()
    pq.write_table(pa.table({"user": pa.array([1], pa.int32()), "url": ["/1"]}), flat / "f.parquet")
    error = refused(lakehouse, "table", "add-files", "web.clicks", str(flat))
    assert "partition" in error and "f.parquet" in error, error
    assert lakehouse.json("query", "SELECT count(*) AS n FROM web.clicks") == [{"n": 13}]


def test_queries_over_files_added_in_place_always_run_and_others_are_answered_from_the_cache(lakehouse, tmp_path):
    """Other tools own files added in place, so `basin serve` never answers a query over them
    from its result cache; a query over a table Basin wrote is, the second time it is asked."""
    folder = tmp_path / "external" / "orders"
    folder.mkdir(parents=True)
    pq.write_table(orders(0, 10), folder / "part-0.parquet")
    (lakehouse.home / "basin.toml").write_text(
        f'[warehouse]\nexternal_locations = ["{tmp_path / "external"}"]\n')
    lakehouse("table", "add-files", "sales.orders", str(folder))
    own = tmp_path / "own.csv"
    own.write_text("id\n1\n2\n")
    lakehouse("import", str(own), "--table", "sales.own")
    base, proc = start_server(lakehouse, "--no-auth")
    try:
        def ask(sql: str) -> tuple:
            request = urllib.request.Request(base + "/api/v1/query", data=json.dumps({"sql": sql}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["rows"], response.headers["Basin-Result-Cache"]

        placed = "SELECT sum(id) AS s FROM sales.orders"
        assert [ask(placed) for _ in range(2)] == [([{"s": 45}], "miss")] * 2
        written = "SELECT sum(id) AS s FROM sales.own"
        assert [ask(written) for _ in range(2)] == [([{"s": 3}], "miss"), ([{"s": 3}], "hit")]
    finally:
        proc.kill()
        proc.wait()
