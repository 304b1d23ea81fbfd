"""Every table Basin writes is real Iceberg: PyIceberg opens its metadata and reads the
same rows Basin's own SQL returns, on every branch."""

import datetime as dt
import decimal
import json

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import StaticTable


def normalize(value):
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def rows(table: pa.Table) -> list:
    names = sorted(table.column_names)
    return sorted(
        (tuple(normalize(r[n]) for n in names) for r in table.to_pylist()),
        key=repr,
    )


def write_inputs(tmp):
    (tmp / "orders.csv").write_text(
        "id,customer,amount,ordered_on,shipped_at,rush,note\n"
        '1,alice,12.50,2024-01-03,2024-01-04 10:00:00,true,"first, with comma"\n'
        "2,bob,7.25,2024-01-03,,false,\n"
        "3,carol,100.00,2024-02-10,2024-02-11 08:30:00,true,big\n"
    )
    (tmp / "orders2.csv").write_text(
        "id,customer,amount,ordered_on,shipped_at,rush,note\n"
        "4,dave,3.10,2024-03-01,2024-03-02 09:00:00,false,late\n"
    )
    (tmp / "events.jsonl").write_text(
        "\n".join(json.dumps(e) for e in [
            {"user": "alice", "clicks": 3, "score": 0.5},
            {"user": "bob", "clicks": 7, "score": 1.25},
            {"user": "carol", "clicks": None, "score": 2.0},
        ]) + "\n"
    )
    days = [dt.date(2024, 1, d) for d in (1, 1, 2, 3, 3, 3)]
    items = pa.table({
        "sku": pa.array(["a", "b", "c", "d", "e", "f"]),
        "qty": pa.array([1, 2, 3, 4, 5, 6], pa.int32()),
        "day": pa.array(days, pa.date32()),
        "price": pa.array([1.5, 2.5, 3.5, 4.5, 5.5, 6.5], pa.float64()),
    })
    pq.write_table(items, tmp / "items.parquet")


def test_pyiceberg_reads_what_basin_wrote(lakehouse, tmp_path):
    write_inputs(tmp_path)
    b = lakehouse
    b("import", str(tmp_path / "orders.csv"), "--table", "sales.orders")
    b("import", str(tmp_path / "orders2.csv"), "--table", "sales.orders")
    b("import", str(tmp_path / "events.jsonl"), "--table", "sales.events")
    b("import", str(tmp_path / "items.parquet"), "--table", "sales.items", "--partition-by", "day(day)")
    b("branch", "create", "dev")
    b("import", str(tmp_path / "orders2.csv"), "--table", "sales.orders", "--branch", "dev", "--mode", "replace")
    b("import", str(tmp_path / "items.parquet"), "--table", "sales.items", "--branch", "dev")

    checked = 0
    for ref in ("main", "dev"):
        for entry in b.json("table", "ls", "--ref", ref):
            name = entry["table"]
            iceberg = StaticTable.from_metadata(entry["metadata_location"]).scan().to_arrow()
            out = tmp_path / f"{ref}-{name}.parquet"
            b("query", f"SELECT * FROM {name}", "--ref", ref, "--format", "parquet", "-o", str(out))
            assert rows(iceberg) == rows(pq.read_table(out)), f"{name} on {ref}"
            checked += 1
    assert checked == 6

    # The replace on dev left exactly the replacement rows; main kept all four.
    dev_orders = StaticTable.from_metadata(
        next(e for e in b.json("table", "ls", "--ref", "dev") if e["table"] == "sales.orders")["metadata_location"]
    )
    assert dev_orders.scan().to_arrow().num_rows == 1
    assert dev_orders.metadata.current_snapshot().summary.operation.value == "overwrite"
    main_orders = b.json("table", "show", "sales.orders")
    assert main_orders["rows"] == 4
    assert [c["type"] for c in main_orders["columns"]][:3] == ["long", "string", "decimal(18, 2)"]


def test_partitioned_table_has_one_file_per_day(lakehouse, tmp_path):
    write_inputs(tmp_path)
    lakehouse("import", str(tmp_path / "items.parquet"), "--table", "shop.items", "--partition-by", "day(day)")
    show = lakehouse.json("table", "show", "shop.items")
    assert show["partition_spec"] == ["day(day)"]
    assert show["data_files"] == 3
    table = StaticTable.from_metadata(show["metadata_location"])
    files = table.inspect.files()
    assert files.num_rows == 3
    filtered = table.scan(row_filter="day = '2024-01-03'").to_arrow()
    assert filtered.num_rows == 3


def test_data_files_hold_row_groups_of_128k_rows(lakehouse, tmp_path):
    # Row groups are how DataFusion spreads one file's scan over cores: 300,000 rows make
    # three groups of at most 131,072 (Parquet's default would make one).
    n = 300_000
    pq.write_table(pa.table({"id": pa.array(range(n), pa.int64())}), tmp_path / "ids.parquet")
    lakehouse("import", str(tmp_path / "ids.parquet"), "--table", "shop.ids")
    show = lakehouse.json("table", "show", "shop.ids")
    table = StaticTable.from_metadata(show["metadata_location"])
    paths = table.inspect.files().column("file_path").to_pylist()
    groups = [pq.ParquetFile(p.removeprefix("file://")).metadata for p in paths]
    sizes = [m.row_group(i).num_rows for m in groups for i in range(m.num_row_groups)]
    assert sum(sizes) == n and max(sizes) <= 131_072 and len(sizes) >= 3, sizes
