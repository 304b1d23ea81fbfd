"""Grants, door by door: one token that may read `sales.*` and write `sandbox.*` (any branch)
and `scratch.*` (dev only), against `hr.*` it may not touch at all. Each door answers every
cell as the grants say: the HTTP API, `basin --remote`, PyIceberg over Iceberg REST, psycopg
over the Postgres wire, a function it deploys and a pipeline it runs. (The console, through
the same API, is driven by headless Chromium in test_console.py.)"""

import json
import os
import subprocess

import psycopg
import pyarrow as pa
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import ForbiddenError, NoSuchTableError

from conftest import BASIN, send, start_server

GRANTS = ["read:sales.*", "write:sandbox.*,run/*", "write:scratch.*@dev,run/*"]

COPY = '''
import basin
import pyarrow as pa


@basin.http(to="TABLE")
def copy(event, context):
    return pa.table({"id": pa.array([event["id"]], pa.int64())})
'''


@pytest.fixture
def matrix(lakehouse, tmp_path):
    for table, csv in (("sales.orders", "id,amount\n1,10\n2,3\n"), ("hr.salaries", "id,salary\n1,100\n")):
        path = tmp_path / f"{table}.csv"
        path.write_text(csv)
        lakehouse("import", str(path), "--table", table)
    lakehouse("branch", "create", "dev")
    grants = [arg for g in GRANTS for arg in ("--grant", g)]
    token = lakehouse("token", "create", "--name", "ana", *grants).strip()
    base, proc = start_server(lakehouse, "--pg-listen", "127.0.0.1:0")
    yield base, proc.port, token
    proc.kill()
    proc.wait()


def test_every_door_answers_as_the_grants_say(lakehouse, matrix, tmp_path):
    base, port, token = matrix
    rows = tmp_path / "rows.csv"
    rows.write_text("id\n7\n")

    # HTTP API: listings hold only what may be read; writes go only where granted.
    status, tables = send("GET", f"{base}/api/v1/tables?ref=dev", token)
    assert [t["table"] for t in tables] == ["sales.orders"], tables
    assert send("POST", f"{base}/api/v1/query", token, {"sql": "SELECT count(*) AS n FROM sales.orders"})[0] == 200
    status, answer = send("POST", f"{base}/api/v1/query", token, {"sql": "SELECT * FROM hr.salaries"})
    assert status == 404 and "hr.salaries" in answer["error"]["message"], answer
    # The change feed reads with the same grants.
    feed = "SELECT count(*) AS n FROM table_changes('{}', 'main', 'dev')"
    assert send("POST", f"{base}/api/v1/query", token, {"sql": feed.format("sales.orders")})[0] == 200
    status, answer = send("POST", f"{base}/api/v1/query", token, {"sql": feed.format("hr.salaries")})
    assert status == 404 and "hr.salaries" in answer["error"]["message"], answer

    def upload(table, branch):
        url = f"{base}/api/v1/tables/{table}/import?filename=rows.csv&branch={branch}"
        return send("POST", url, token, data=b"id\n7\n", content_type="text/csv")[0]

    assert [upload("sandbox.api", "main"), upload("scratch.api", "dev")] == [200, 200]
    assert [upload("scratch.api", "main"), upload("sales.orders", "dev"), upload("hr.salaries", "dev")] == [403] * 3

    # basin --remote: the same answers, from the CLI.
    def remote(*args):
        env = {**os.environ, "BASIN_REMOTE": base, "BASIN_TOKEN": token}
        env.pop("BASIN_HOME", None)
        return subprocess.run([BASIN, *args], capture_output=True, text=True, env=env, cwd=tmp_path)

    listed = json.loads(remote("table", "ls", "--ref", "dev", "--format", "json").stdout)
    assert [t["table"] for t in listed] == ["sales.orders", "scratch.api"], listed
    assert remote("import", str(rows), "--table", "scratch.cli", "--branch", "dev").returncode == 0
    refused = remote("import", str(rows), "--table", "scratch.cli", "--branch", "main")
    assert refused.returncode != 0 and "`ana` may not write `scratch" in refused.stderr, refused.stderr
    assert "does not exist" in remote("query", "SELECT * FROM hr.salaries").stderr

    # PyIceberg over Iceberg REST.
    main = RestCatalog("basin", uri=base, warehouse="main", token=token)
    assert sorted(main.list_namespaces()) == [("sales",), ("sandbox",)]
    with pytest.raises(NoSuchTableError):
        main.load_table("hr.salaries")
    sandbox = main.load_table("sandbox.api")
    sandbox.append(pa.table({"id": pa.array([8], pa.int64())}))
    with pytest.raises(ForbiddenError):
        main.load_table("sales.orders").append(pa.table({"id": pa.array([9], pa.int64()),
                                                          "amount": pa.array([1], pa.int64())}))

    # psycopg over the Postgres wire.
    with psycopg.connect(host="127.0.0.1", port=port, user="ana", password=token, dbname="main",
                         autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0] == 2
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM hr.salaries")
        schemas = {r[0] for r in conn.execute("SELECT table_schema FROM information_schema.tables")}
        assert "hr" not in schemas and "sales" in schemas, schemas

    # A function ana deploys writes with her grants: to sandbox yes, to sales no.
    def deploy(name, table):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "functions.py").write_text(COPY.replace("TABLE", table).replace("def copy", f"def {name}"))
        return remote("deploy", str(folder))

    assert deploy("keep", "sandbox.kept").returncode == 0
    assert send("POST", f"{base}/fn/keep", token, {"id": 5})[0] == 200
    assert lakehouse.json("query", "SELECT id FROM sandbox.kept") == [{"id": 5}]
    refused = deploy("leak", "sales.leaked")
    assert refused.returncode != 0 and "which `ana` may not write" in refused.stderr, refused.stderr

    # A pipeline ana runs reads and writes with her grants.
    def run(name, namespace, sql, branch):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "basin.toml").write_text(f'[project]\nname = "{name}"\nnamespace = "{namespace}"\n')
        (folder / "out.sql").write_text(sql)
        return remote("run", str(folder), "--branch", branch)

    assert run("fine", "sandbox", "SELECT count(*) AS n FROM sales.orders\n", "main").returncode == 0
    assert lakehouse.json("query", "SELECT n FROM sandbox.out") == [{"n": 2}]
    peek = run("peek", "sandbox", "SELECT * FROM hr.salaries\n", "main")
    assert peek.returncode != 0 and "reads `hr.salaries`, which is neither" in peek.stderr, peek.stderr
    wrong_branch = run("late", "scratch", "SELECT 1 AS one\n", "main")
    assert wrong_branch.returncode != 0 and "may not write `scratch" in wrong_branch.stderr, wrong_branch.stderr

    # Every commit through a door names ana (or her function), and nothing of hr changed.
    authors = {(c["author"], c["door"]) for c in lakehouse.json("log", "main", "-n", "50")
               if c["door"] not in ("local", None)}
    assert authors == {("ana", "api"), ("ana", "iceberg-rest"), ("function:keep", "function")}, authors
    assert lakehouse.json("query", "SELECT count(*) AS n FROM hr.salaries") == [{"n": 1}]
