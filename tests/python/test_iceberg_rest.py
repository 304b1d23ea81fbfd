"""The Iceberg REST catalog, driven by the real client: PyIceberg from PyPI against a real
`basin serve`. Branches are warehouses; every client commit is one catalog commit."""

import gzip
import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    ForbiddenError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
    UnauthorizedError,
)
from pyiceberg.types import StringType

from conftest import send, start_server


def catalog(base, warehouse="main", **props):
    return RestCatalog("basin", uri=base, warehouse=warehouse, **props)


def orders(ids, amounts):
    return pa.table({"id": pa.array(ids, pa.int64()), "amount": pa.array(amounts, pa.float64())})


def count(lakehouse, table, at="main"):
    out = lakehouse.json("query", f"SELECT count(*) AS n FROM {table}", "--ref", at)
    return out[0]["n"]


def test_pyiceberg_creates_appends_evolves_time_travels_and_branches(lakehouse, open_server):
    main = catalog(open_server)
    main.create_namespace("sales", {"owner": "ana"})
    assert ("sales",) in main.list_namespaces()
    assert main.load_namespace_properties("sales") == {"owner": "ana"}
    summary = main.update_namespace_properties("sales", removals={"gone"}, updates={"tier": "gold"})
    assert summary.updated == ["tier"] and summary.missing == ["gone"] and summary.removed == []

    table = main.create_table("sales.orders", schema=orders([], []).schema)
    table.append(orders([1, 2], [10.5, 3.25]))
    table.append(orders([3], [7.0]))
    with table.update_schema() as update:
        update.add_column("note", StringType())
    table.append(pa.table({"id": pa.array([4], pa.int64()), "amount": [1.0], "note": ["late"]}))

    read = main.load_table("sales.orders").scan().to_arrow()
    assert sorted(read.column("id").to_pylist()) == [1, 2, 3, 4]
    assert read.column("note").to_pylist().count("late") == 1
    # Basin's own SQL reads what PyIceberg wrote, and the catalog kept the whole history.
    assert count(lakehouse, "sales.orders") == 4
    shown = lakehouse.json("table", "show", "sales.orders")
    assert [s["operation"] for s in shown["snapshots"]] == ["append", "append", "append"]
    assert [c["name"] for c in shown["columns"]] == ["id", "amount", "note"]
    log = lakehouse.json("log", "--limit", "3")
    assert [e["message"] for e in log] == ["append to sales.orders", "change the schema of sales.orders",
                                          "append to sales.orders"]

    # Time travel by snapshot id.
    first = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)[0]
    assert sorted(table.scan(snapshot_id=first.snapshot_id).to_arrow().column("id").to_pylist()) == [1, 2]

    # Branch `dev` is another warehouse: main does not see its commits until `basin merge dev`.
    lakehouse("branch", "create", "dev")
    dev = catalog(open_server, warehouse="dev")
    dev.load_table("sales.orders").append(pa.table({"id": pa.array([5], pa.int64()), "amount": [2.0], "note": ["dev"]}))
    assert len(dev.load_table("sales.orders").scan().to_arrow()) == 5
    assert len(main.load_table("sales.orders").scan().to_arrow()) == 4
    assert count(lakehouse, "sales.orders", at="dev") == 5 and count(lakehouse, "sales.orders") == 4
    lakehouse("merge", "dev")
    assert len(main.load_table("sales.orders").scan().to_arrow()) == 5
    assert count(lakehouse, "sales.orders") == 5


def test_config_names_the_branch_and_the_exact_endpoints(lakehouse, open_server):
    status, config = send("GET", f"{open_server}/v1/config?warehouse=main")
    assert status == 200 and config["defaults"] == {"prefix": "main"}
    assert "POST /v1/{prefix}/transactions/commit" in config["endpoints"]
    assert "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}" in config["endpoints"]
    assert not any("views" in e or "oauth" in e for e in config["endpoints"])
    # Every announced endpoint is served: none answers 404 for its route or 405 for its method.
    send("POST", f"{open_server}/v1/main/namespaces", None, {"namespace": ["n"]})
    for endpoint in config["endpoints"]:
        method, path = endpoint.split(" ")
        url = open_server + path.replace("{prefix}", "main").replace("{namespace}", "n").replace("{table}", "t")
        status, body = send(method, url, None, {} if method == "POST" else None)
        assert status != 405, endpoint
        assert status != 404 or body is None or body["error"]["type"].startswith("NoSuch"), (endpoint, body)

    status, body = send("GET", f"{open_server}/v1/config?warehouse=nope")
    assert status == 400 and "basin branch create nope" in body["error"]["message"]


def test_errors_lifecycle_staged_create_and_transactions(lakehouse, open_server):
    main = catalog(open_server)
    with pytest.raises(NoSuchNamespaceError):
        main.create_table("ghost.orders", schema=orders([], []).schema)
    main.create_namespace("sales")
    table = main.create_table("sales.orders", schema=orders([], []).schema)
    with pytest.raises(TableAlreadyExistsError):
        main.create_table("sales.orders", schema=orders([], []).schema)
    with pytest.raises(NoSuchTableError):
        main.load_table("sales.missing")
    assert main.table_exists("sales.orders") and not main.table_exists("sales.missing")
    assert main.namespace_exists("sales") and not main.namespace_exists("ghost")
    with pytest.raises(NamespaceNotEmptyError):
        main.drop_namespace("sales")

    # The spec's error body, with the status as `code`.
    status, body = send("GET", f"{open_server}/v1/main/namespaces/sales/tables/missing")
    assert status == 404 and body["error"]["type"] == "NoSuchTableException" and body["error"]["code"] == 404
    assert "sales.missing" in body["error"]["message"]

    # A commit whose requirement no longer holds is refused with 409, and nothing changes.
    table.append(orders([1], [1.0]))
    stale = {"requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1}],
             "updates": [{"action": "set-properties", "updates": {"x": "y"}}]}
    status, body = send("POST", f"{open_server}/v1/main/namespaces/sales/tables/orders", None, stale)
    assert status == 409 and body["error"]["type"] == "CommitFailedException"
    assert "x" not in main.load_table("sales.orders").properties

    # A staged create becomes visible only when its transaction commits.
    tx = main.create_table_transaction("sales.staged", schema=orders([], []).schema)
    assert not main.table_exists("sales.staged")
    tx.append(orders([7, 8], [1.0, 2.0]))
    tx.commit_transaction()
    assert sorted(main.load_table("sales.staged").scan().to_arrow().column("id").to_pylist()) == [7, 8]

    # A multi-table transaction is one catalog commit: all or nothing.
    commits = len(lakehouse.json("log"))
    change = lambda name, reqs: {"identifier": {"namespace": ["sales"], "name": name}, "requirements": reqs,
                                 "updates": [{"action": "set-properties", "updates": {"team": "growth"}}]}
    failing = [{"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000"}]
    status, body = send("POST", f"{open_server}/v1/main/transactions/commit", None,
                        {"table-changes": [change("orders", []), change("staged", failing)]})
    assert status == 409 and "team" not in main.load_table("sales.orders").properties
    status, _ = send("POST", f"{open_server}/v1/main/transactions/commit", None,
                     {"table-changes": [change("orders", []), change("staged", [])]})
    assert status == 204 and len(lakehouse.json("log")) == commits + 1
    assert main.load_table("sales.staged").properties["team"] == "growth"

    # Rename, register, drop.
    main.rename_table("sales.staged", "sales.renamed")
    assert not main.table_exists("sales.staged") and main.table_exists("sales.renamed")
    location = main.load_table("sales.renamed").metadata_location
    registered = main.register_table("sales.copy", location)
    assert len(registered.scan().to_arrow()) == 2
    main.drop_table("sales.copy")
    assert not main.table_exists("sales.copy")
    status, body = send("POST", f"{open_server}/v1/main/namespaces/sales/register", None,
                        {"name": "evil", "metadata-location": "/etc/passwd"})
    assert status == 400 and "outside the warehouse" in body["error"]["message"]


def test_no_commit_or_value_makes_basin_touch_files_outside_the_warehouse(lakehouse, open_server, tmp_path):
    """A writer may not point Basin's writes or reads outside the warehouse: not with the
    table properties that name data folders, not with a snapshot whose manifest list is
    another file (`/dev/zero` would be read until memory ran out), and not with a partition
    value that spells a path: each value stays one folder name inside the table."""
    main = catalog(open_server)
    main.create_namespace("sales")
    main.create_table("sales.orders", schema=orders([], []).schema)
    elsewhere = tmp_path / "elsewhere"
    table_url = f"{open_server}/v1/main/namespaces/sales/tables/orders"
    hostile = [
        {"action": "set-properties", "updates": {"write.data.path": str(elsewhere)}},
        {"action": "set-properties", "updates": {"write.folder-storage.path": f"file://{elsewhere}"}},
        {"action": "add-snapshot", "snapshot": {
            "snapshot-id": 1, "sequence-number": 1, "timestamp-ms": 1700000000000, "schema-id": 0,
            "manifest-list": "/dev/zero", "summary": {"operation": "append"}}},
    ]
    for update in hostile:
        status, body = send("POST", table_url, None, {"requirements": [], "updates": [update]})
        assert status == 400 and "outside the warehouse" in body["error"]["message"], (update, body)
    status, body = send("POST", f"{open_server}/v1/main/namespaces/sales/tables", None,
                        {"name": "elsewhere", "schema": main.load_table("sales.orders").schema().model_dump(by_alias=True),
                         "properties": {"write.data.path": str(elsewhere)}})
    assert status == 400 and "outside the warehouse" in body["error"]["message"], body
    assert main.load_table("sales.orders").current_snapshot() is None
    # Nor with a manifest in the warehouse that names a data file outside it (PyIceberg's
    # add_files commits files where they lie): readers would read any file the server can.
    import pyarrow.parquet as pq
    outside = tmp_path / "outside.parquet"
    pq.write_table(orders([1], [2.5]), outside)
    with pytest.raises(Exception, match="outside the warehouse"):
        main.load_table("sales.orders").add_files([str(outside)])
    assert main.load_table("sales.orders").current_snapshot() is None

    csv = tmp_path / "regions.csv"
    csv.write_text(f"region,n\na/../../../../../../../../../..{elsewhere},1\nEU,2\n")
    lakehouse("import", str(csv), "--table", "sales.regions", "--partition-by", "region")
    assert not elsewhere.exists()
    warehouse = lakehouse.home / ".basin" / "warehouse"
    files = [t.file.file_path.removeprefix("file://") for t in main.load_table("sales.regions").scan().plan_files()]
    assert len(files) == 2 and all(Path(f).resolve().is_relative_to(warehouse.resolve()) for f in files), files
    assert lakehouse("query", "SELECT sum(n) AS n FROM sales.regions", "--format", "csv").split() == ["n", "3"]

    # A metadata file inside the warehouse that names a manifest list outside it is not
    # registered (each read of the table, and gc, would read `/dev/zero`).
    metadata = json.loads(Path(main.load_table("sales.regions").metadata_location.removeprefix("file://")).read_text())
    metadata["snapshots"][0]["manifest-list"] = "/dev/zero"
    planted = warehouse / "planted.metadata.json"
    planted.write_text(json.dumps(metadata))
    status, body = send("POST", f"{open_server}/v1/main/namespaces/sales/register", None,
                        {"name": "planted", "metadata-location": str(planted)})
    assert status == 400 and "outside the warehouse" in body["error"]["message"], body
    assert not main.table_exists("sales.planted")
    # Nor one named through the warehouse and back out, however the dots are encoded.
    for dots in ("%2e%2e", "%2E%2e", "%252e%252e"):
        sneaky = f"file://{warehouse}/{dots}/{warehouse.name}/planted.metadata.json"
        status, body = send("POST", f"{open_server}/v1/main/namespaces/sales/register", None,
                            {"name": "sneaky", "metadata-location": sneaky})
        assert status == 400 and "outside the warehouse" in body["error"]["message"], (dots, body)
    assert not main.table_exists("sales.sneaky")
    # Nor a file past `[sql] max_metadata_size` (256 MiB): not read whole, nor gunzipped whole
    # (found by a hostile review: iceberg-rust reads and unpacks a metadata file whole).
    huge = warehouse / "huge.metadata.json"
    with open(huge, "wb") as f:
        f.truncate(300 << 20)  # sparse: 300 MiB of size, no disk
    bomb = warehouse / "bomb.metadata.json"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        for _ in range(300):
            f.write(bytes(1 << 20))
    for planted in (huge, bomb):
        status, body = send("POST", f"{open_server}/v1/main/namespaces/sales/register", None,
                            {"name": "big", "metadata-location": str(planted)})
        assert status == 422 and "`[sql] max_metadata_size`" in body["error"]["message"], (planted, body)
    assert bomb.stat().st_size < 2 << 20 and not main.table_exists("sales.big")
    # Nor one whose manifest list and manifest are in the warehouse, and whose manifest
    # names a data file outside it (written here with PyIceberg's own manifest writers).
    plant_outside_data_file(main.load_table("sales.orders"), outside, warehouse / "planted2.metadata.json")
    status, body = send("POST", f"{open_server}/v1/main/namespaces/sales/register", None,
                        {"name": "planted2", "metadata-location": str(warehouse / "planted2.metadata.json")})
    assert status == 400 and "outside the warehouse" in body["error"]["message"], body
    assert not main.table_exists("sales.planted2")
    # Nor a commit whose new manifest names the file as EXISTING, added by another snapshot.
    listed = plant_manifest(main.load_table("sales.orders"), outside, warehouse, 424243, status="EXISTING",
                            manifest_snapshot_id=7, tag="commit")
    status, body = send("POST", table_url, None, {"requirements": [], "updates": [
        {"action": "add-snapshot", "snapshot": {
            "snapshot-id": 424243, "sequence-number": 1, "timestamp-ms": int(time.time() * 1000) + 1000, "schema-id": 0,
            "manifest-list": str(listed), "summary": {"operation": "append"}}},
        {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": 424243}]})
    assert status == 400 and "outside the warehouse" in body["error"]["message"], body
    assert main.load_table("sales.orders").current_snapshot() is None


def plant_manifest(table, data, folder, snapshot_id, status="ADDED", manifest_snapshot_id=None, tag="a"):
    """Writes in `folder` a manifest naming `data` (wherever it lies) with an entry of
    `status`, claiming to be added by `manifest_snapshot_id` (default `snapshot_id`), and a
    manifest list of snapshot `snapshot_id` naming it; returns the list's path. PyIceberg's
    own manifest writers."""
    from pyiceberg.io.pyarrow import PyArrowFileIO, parquet_file_to_data_file
    from pyiceberg.manifest import ManifestEntry, ManifestEntryStatus, write_manifest, write_manifest_list

    io, metadata = PyArrowFileIO(), table.metadata
    data_file = parquet_file_to_data_file(io, metadata, str(data))
    with write_manifest(2, metadata.spec(), metadata.schema(), io.new_output(str(folder / f"planted-{tag}-m0.avro")),
                        manifest_snapshot_id or snapshot_id, "null") as writer:
        writer.add_entry(ManifestEntry.from_args(status=ManifestEntryStatus[status], snapshot_id=snapshot_id,
                                                 sequence_number=1, file_sequence_number=1, data_file=data_file))
    manifest = writer.to_manifest_file()
    manifest.sequence_number = manifest.min_sequence_number = 1  # as an earlier commit's would be
    listed = folder / f"planted-{tag}-list.avro"
    with write_manifest_list(2, io.new_output(str(listed)), snapshot_id, None, 1, "null") as lst:
        lst.add_manifests([manifest])
    return listed


def plant_outside_data_file(table, data, metadata_path):
    """At `metadata_path`, the table's metadata with a snapshot whose manifest (beside it)
    adds `data`."""
    snapshot_id = 424242
    listed = plant_manifest(table, data, metadata_path.parent, snapshot_id, tag="register")
    planted = json.loads(Path(table.metadata_location.removeprefix("file://")).read_text())
    planted["snapshots"] = [{"snapshot-id": snapshot_id, "sequence-number": 1, "timestamp-ms": 1700000000000,
                             "schema-id": 0, "manifest-list": str(listed), "summary": {"operation": "append"}}]
    planted["current-snapshot-id"] = snapshot_id
    planted["last-sequence-number"] = 1
    planted["refs"] = {"main": {"snapshot-id": snapshot_id, "type": "branch"}}
    planted["snapshot-log"] = []
    metadata_path.write_text(json.dumps(planted))

def test_the_codec_a_table_names_is_the_codec_its_files_are_written_with(lakehouse, open_server, tmp_path):
    """`write.parquet.compression-codec`, set as any engine sets it, governs Basin's writes; a
    codec Basin does not write fails the import by name and leaves the table as it was."""
    import pyarrow.parquet as pq

    main = catalog(open_server)
    main.create_namespace("sales")
    main.create_table("sales.orders", schema=orders([], []).schema,
                      properties={"write.parquet.compression-codec": "zstd", "write.parquet.compression-level": "3"})
    csv = tmp_path / "orders.csv"
    csv.write_text("id,amount\n" + "".join(f"{i},{i}.5\n" for i in range(1000)))
    lakehouse("import", str(csv), "--table", "sales.orders")

    def codecs():
        table = main.load_table("sales.orders")
        files = [t.file.file_path.removeprefix("file://") for t in table.scan().plan_files()]
        assert files
        return {pq.ParquetFile(f).metadata.row_group(0).column(c).compression for f in files for c in range(2)}

    assert codecs() == {"ZSTD"}
    assert count(lakehouse, "sales.orders") == 1000

    main.load_table("sales.orders").transaction().set_properties(
        {"write.parquet.compression-codec": "lzo"}).commit_transaction()
    failed = lakehouse.run("import", str(csv), "--table", "sales.orders", check=False)
    assert failed.returncode != 0
    assert "sales.orders" in failed.stderr and "`lzo`" in failed.stderr and "hint:" in failed.stderr, failed.stderr
    assert count(lakehouse, "sales.orders") == 1000

    main.load_table("sales.orders").transaction().set_properties(
        {"write.parquet.compression-codec": "uncompressed"}).commit_transaction()
    lakehouse("import", str(csv), "--table", "sales.orders")
    assert codecs() == {"ZSTD", "UNCOMPRESSED"}
    assert count(lakehouse, "sales.orders") == 2000


def test_concurrent_appends_lose_nothing(lakehouse, open_server):
    catalog(open_server).create_namespace("sales")
    catalog(open_server).create_table("sales.orders", schema=orders([], []).schema)
    writers, per_writer, errors = 4, 3, []

    def write(n):
        client = catalog(open_server)
        for i in range(per_writer):
            while True:  # the client's own retry: reload, append again
                try:
                    client.load_table("sales.orders").append(orders([n * 100 + i], [1.0]))
                    break
                except CommitFailedException:
                    continue
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                    return

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = catalog(open_server).load_table("sales.orders").scan().to_arrow().column("id").to_pylist()
    assert sorted(ids) == sorted(n * 100 + i for n in range(writers) for i in range(per_writer))
    assert count(lakehouse, "sales.orders") == writers * per_writer


def test_tokens_guard_the_catalog(lakehouse):
    reader = lakehouse("token", "create", "--role", "reader").strip()
    writer = lakehouse("token", "create", "--role", "writer").strip()
    base, proc = start_server(lakehouse)
    try:
        with pytest.raises(UnauthorizedError):
            catalog(base)  # the client asks for /v1/config first
        catalog(base, token=writer).create_namespace("sales")
        as_reader = catalog(base, token=reader)
        assert ("sales",) in as_reader.list_namespaces()
        with pytest.raises(ForbiddenError):
            as_reader.create_namespace("other")
    finally:
        proc.kill()
        proc.wait()
