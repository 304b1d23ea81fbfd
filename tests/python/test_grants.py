"""Grants against real clients: a token that may read only `sales.*` sees no other table from
psql (`\\dt`, information_schema, pg_catalog), psycopg (42P01) or PyIceberg (listings, loads),
and a [[grants]] in basin.toml gives a token's name write on `sandbox.*` on dev/* only."""

import os
import subprocess

import pyarrow as pa
import psycopg
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import ForbiddenError, NoSuchTableError

from conftest import start_server

DECLARED = """
[[grants]]
to = "bo"
write = ["sandbox.*"]
branches = ["dev/*"]
"""


@pytest.fixture
def granted(lakehouse, tmp_path):
    for table, csv in (("sales.orders", "id,amount\n1,10\n2,3\n"), ("hr.salaries", "id,salary\n1,100\n")):
        path = tmp_path / f"{table}.csv"
        path.write_text(csv)
        lakehouse("import", str(path), "--table", table)
    lakehouse("branch", "create", "dev/bo")
    (lakehouse.home / "basin.toml").write_text(DECLARED)
    tokens = {
        "ana": lakehouse("token", "create", "--name", "ana", "--grant", "read:sales.*").strip(),
        "bo": lakehouse("token", "create", "--name", "bo", "--grant", "read:sales.*").strip(),
    }
    base, proc = start_server(lakehouse, "--pg-listen", "127.0.0.1:0")
    yield base, proc.port, tokens
    proc.kill()
    proc.wait()


def psql(port, token, *args):
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10", "PGPASSWORD": token}
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "ana", "-d", "main", "-X", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_postgres_clients_see_only_readable_tables(granted):
    _, port, tokens = granted
    listed = psql(port, tokens["ana"], "-c", r"\dt *.*")
    assert listed.returncode == 0, listed.stderr
    assert "orders" in listed.stdout and "salaries" not in listed.stdout, listed.stdout
    refused = psql(port, tokens["ana"], "-v", "ON_ERROR_STOP=1", "-c", "SELECT * FROM hr.salaries")
    assert refused.returncode != 0 and "does not exist" in refused.stderr, refused.stderr
    with psycopg.connect(host="127.0.0.1", port=port, user="ana", password=tokens["ana"], dbname="main",
                         autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog')")]
        assert names == ["orders"], names
        classes = [r[0] for r in conn.execute("SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'r'")]
        assert "salaries" not in classes and "orders" in classes, classes
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT count(*) FROM hr.salaries")
        assert conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0] == 2


def test_pyiceberg_lists_and_loads_only_readable_tables_and_writes_where_granted(granted):
    base, _, tokens = granted
    ana = RestCatalog("basin", uri=base, warehouse="main", token=tokens["ana"])
    assert ana.list_namespaces() == [("sales",)]
    assert ana.list_tables("sales") == [("sales", "orders")]
    with pytest.raises(NoSuchTableError):
        ana.load_table("hr.salaries")

    # bo's token reads sales.*; basin.toml adds write on sandbox.* on dev/* to his name.
    dev = RestCatalog("basin", uri=base, warehouse="dev/bo", token=tokens["bo"])
    dev.create_namespace("sandbox")
    table = dev.create_table("sandbox.scratch", schema=pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": pa.array([1], pa.int64())}))
    with pytest.raises(ForbiddenError, match="may not write"):
        dev.load_table("sales.orders").append(pa.table({"id": pa.array([3], pa.int64()),
                                                         "amount": pa.array([1], pa.int64())}))
    main = RestCatalog("basin", uri=base, warehouse="main", token=tokens["bo"])
    with pytest.raises(ForbiddenError):
        main.create_namespace("sandbox")


def test_pyiceberg_cannot_add_another_tables_files_to_its_own(granted, lakehouse):
    """bo may write sandbox.* on dev/*: adding hr.salaries' data file (its path learned
    somehow) to a sandbox table would let him read it there. The commit is refused."""
    base, _, tokens = granted
    salaries = next((lakehouse.home / ".basin" / "warehouse" / "hr").rglob("*.parquet"))
    dev = RestCatalog("basin", uri=base, warehouse="dev/bo", token=tokens["bo"])
    dev.create_namespace("sandbox")
    table = dev.create_table("sandbox.loot", schema=pa.schema([("id", pa.int64()), ("salary", pa.int64())]))
    with pytest.raises(ForbiddenError, match="a file of table `hr.salaries`"):
        table.add_files([str(salaries)])
    assert dev.load_table("sandbox.loot").scan().to_arrow().num_rows == 0
    # His own table's files are his to add.
    own = dev.load_table("sandbox.loot")
    own.append(pa.table({"id": pa.array([1], pa.int64()), "salary": pa.array([5], pa.int64())}))
    assert own.scan().to_arrow().num_rows == 1
