"""`basin serve`: health, metrics, refs and SQL over HTTP from a real client, request ids in
the response and the logs, clear errors, and a clean stop on SIGTERM."""

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import BASIN, send, start_server as start


@pytest.fixture
def server(lakehouse, tmp_path):
    (tmp_path / "orders.csv").write_text("id,amount\n1,10.50\n2,3.25\n")
    lakehouse("import", str(tmp_path / "orders.csv"), "--table", "sales.orders")
    base, proc = start(lakehouse, "--no-auth")
    yield base, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def post(url, body, accept="application/json"):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "accept": accept,
                                              "x-request-id": "test-42"})
    return urllib.request.urlopen(request, timeout=30)


def test_numbers_come_back_exact_over_http_and_from_the_cli(lakehouse, tmp_path, server):
    # Money with its scale and ids past 2^53, stored by an import, read back digit for digit.
    (tmp_path / "ledger.csv").write_text(
        "id,amount\n-999999999999999999,0.00\n999999999999999999,-0.01\n9007199254740993,2.00\n"
        "9007199254740991,10.50\n1,9999999999999.99\n")
    lakehouse("import", str(tmp_path / "ledger.csv"), "--table", "sales.ledger")
    stored = [
        {"id": "-999999999999999999", "amount": "0.00"},
        {"id": 1, "amount": "9999999999999.99"},
        {"id": 9007199254740991, "amount": "10.50"},
        {"id": "9007199254740993", "amount": "2.00"},
        {"id": "999999999999999999", "amount": "-0.01"},
    ]
    # And the extremes of each type.
    extremes = [{
        "min": "-9223372036854775808", "max": "9223372036854775807",
        "wide_max": "9999999999999999999999999999.9999999999",
        "wide_min": "-9999999999999999999999999999.9999999999", "tiny": "0.0000000001",
    }]
    extremes_sql = ("SELECT CAST('-9223372036854775808' AS BIGINT) AS min, CAST('9223372036854775807' AS BIGINT) AS max, "
                    "CAST('9999999999999999999999999999.9999999999' AS DECIMAL(38,10)) AS wide_max, "
                    "CAST('-9999999999999999999999999999.9999999999' AS DECIMAL(38,10)) AS wide_min, "
                    "CAST('0.0000000001' AS DECIMAL(38,10)) AS tiny")
    base, _ = server
    for sql, expected in [("SELECT id, amount FROM sales.ledger ORDER BY id", stored), (extremes_sql, extremes)]:
        with post(f"{base}/api/v1/query", {"sql": sql}) as r:
            body = json.load(r)
        assert body["rows"] == expected
        assert lakehouse.json("query", sql) == expected
    with post(f"{base}/api/v1/query", {"sql": "SELECT id, amount FROM sales.ledger"}) as r:
        assert [c["type"] for c in json.load(r)["columns"]] == ["Int64", "Decimal128(18, 2)"]

    # Snapshot ids are strings in the API and the CLI's JSON alike (random 64-bit numbers).
    shown = json.load(urllib.request.urlopen(f"{base}/api/v1/tables/sales.ledger"))
    assert isinstance(shown["current_snapshot_id"], str)
    assert shown["current_snapshot_id"] == lakehouse.json("table", "show", "sales.ledger")["current_snapshot_id"]
    assert shown["snapshots"][-1]["snapshot_id"] == shown["current_snapshot_id"]


def test_queries_refs_metrics_and_request_ids(server):
    base, proc = server
    assert urllib.request.urlopen(f"{base}/healthz").read() == b"ok\n"

    with post(f"{base}/api/v1/query", {"sql": "SELECT sum(amount) AS total, count(*) AS n FROM sales.orders"}) as r:
        assert r.headers["x-request-id"] == "test-42"
        body = json.load(r)
    assert body["rows"] == [{"total": "13.75", "n": 2}]  # decimals as strings with their scale
    assert [c["name"] for c in body["columns"]] == ["total", "n"]

    with post(f"{base}/api/v1/query", {"sql": "SELECT id FROM orders ORDER BY id", "namespace": "sales"},
              accept="application/vnd.apache.arrow.stream") as r:
        assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
        table = pa.ipc.open_stream(r.read()).read_all()
    assert table.column("id").to_pylist() == [1, 2]

    refs = json.load(urllib.request.urlopen(f"{base}/api/v1/refs"))
    assert [r["name"] for r in refs] == ["main"]
    tables = json.load(urllib.request.urlopen(f"{base}/api/v1/tables?ref=main"))
    assert [t["table"] for t in tables] == ["sales.orders"]
    log = json.load(urllib.request.urlopen(f"{base}/api/v1/log?ref=main&limit=1"))
    assert log[0]["message"].startswith("import 1 file into sales.orders")
    # The server meters queries after answering them: wait for the records to land.
    deadline = time.time() + 10
    while True:
        usage = json.load(urllib.request.urlopen(f"{base}/api/v1/usage?by=day"))
        if sum(r["invocations"] for r in usage["rows"]) >= 2 or time.time() > deadline:
            break
        time.sleep(0.05)
    # The two queries so far, metered as one day's usage and priced as Athena would.
    assert [r["invocations"] for r in usage["rows"]] == [2]
    assert usage["pricing"]["per_tb_scanned"] == 5.0 and usage["rows"][0]["cost_usd"] > 0
    assert json.load(urllib.request.urlopen(f"{base}/api/v1/runs")) == []
    with pytest.raises(urllib.error.HTTPError) as no_run:
        urllib.request.urlopen(f"{base}/api/v1/runs/abc")
    assert no_run.value.code == 404 and "basin runs ls" in json.load(no_run.value)["error"]["hint"]

    with pytest.raises(urllib.error.HTTPError) as missing:
        post(f"{base}/api/v1/query", {"sql": "SELECT * FROM sales.order"})
    assert missing.value.code == 404
    error = json.load(missing.value)["error"]
    assert "does not exist" in error["message"] and "sales.orders" in error["hint"]
    # An unqualified name: the hint names the request's own way to pick the namespace.
    with pytest.raises(urllib.error.HTTPError) as unqualified:
        post(f"{base}/api/v1/query", {"sql": "SELECT * FROM orders"})
    hint = json.load(unqualified.value)["error"]["hint"]
    assert hint == 'did you mean `sales.orders`, or `"namespace": "sales"` in the request?', hint

    metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
    assert 'basin_http_requests_total{method="POST",route="/api/v1/query",status="200"} 2' in metrics
    assert 'basin_http_requests_total{method="POST",route="/api/v1/query",status="404"} 2' in metrics
    assert "basin_queries_total 4" in metrics and "basin_query_errors_total 2" in metrics

    # An empty answer, asked twice so that the second comes from the result cache, as JSON and
    # as Arrow: each a whole answer of no rows. (An answer of no batches at all once dropped
    # the connection: `result_cache`'s unit test `an_answer_of_no_batches_ends_and_stays_ended`.)
    empty = {"sql": "SELECT id FROM sales.orders WHERE id < 0"}
    for accept in ["application/json", "application/json", "application/vnd.apache.arrow.stream"] * 2:
        with post(f"{base}/api/v1/query", empty, accept=accept) as r:
            raw = r.read()
        rows = json.loads(raw)["rows"] if accept == "application/json" else pa.ipc.open_stream(raw).read_all()
        assert len(rows) == 0, raw

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    logs = proc.stderr.read()
    assert "request_id=test-42" in logs and "stopping" in logs


def test_no_auth_beyond_loopback_is_refused(lakehouse):
    refused = lakehouse.run("serve", "--listen", "0.0.0.0:0", "--no-auth", check=False)
    assert refused.returncode == 1 and "anyone on the network" in refused.stderr
    assert "basin token create" in refused.stderr


def test_tokens_with_roles_guard_the_api(lakehouse):
    reader = lakehouse("token", "create", "--role", "reader", "--name", "dashboards").strip()
    writer = lakehouse("token", "create", "--role", "writer").strip()
    assert reader.startswith("basin_") and reader != writer
    tokens = lakehouse.json("token", "ls")
    assert sorted(t["role"] for t in tokens) == ["reader", "writer"]
    assert all("hash" not in t for t in tokens)
    # Stored hashed: the secret appears nowhere in the catalog database.
    catalog = (lakehouse.home / ".basin" / "catalog.db").read_bytes()
    assert reader.encode() not in catalog and writer.encode() not in catalog

    base, proc = start(lakehouse)
    try:
        assert urllib.request.urlopen(f"{base}/healthz").status == 200  # no token needed
        status, body = send("GET", f"{base}/api/v1/refs")
        assert status == 401 and "basin token create" in body["error"]["hint"]
        assert send("GET", f"{base}/api/v1/refs", "basin_wrong")[0] == 401
        status, refs = send("GET", f"{base}/api/v1/refs", reader)
        assert status == 200 and [r["name"] for r in refs] == ["main"]
        status, body = send("POST", f"{base}/api/v1/branches", reader, {"name": "dev"})
        assert status == 403 and "token is a reader;" in body["error"]["message"] and "needs a writer" in body["error"]["message"]
        status, created = send("POST", f"{base}/api/v1/branches", writer, {"name": "dev"})
        assert status == 201 and created["name"] == "dev"
        assert send("POST", f"{base}/api/v1/query", reader, {"sql": "SELECT 1 AS one"})[0] == 200
        revoked = tokens[0]["id"] if tokens[0]["role"] == "reader" else tokens[1]["id"]
        lakehouse("token", "rm", revoked)
        assert send("GET", f"{base}/api/v1/refs", reader)[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "dev" in lakehouse("branch", "ls")


def test_http_api_merges_manages_namespaces_imports_uploads_and_tokens(lakehouse):
    admin = lakehouse("token", "create", "--role", "admin").strip()
    writer = lakehouse("token", "create", "--role", "writer").strip()
    base, proc = start(lakehouse)
    try:
        # Import by upload: a branch gets a table; a malformed file is refused by name and line.
        assert send("POST", f"{base}/api/v1/branches", writer, {"name": "dev"})[0] == 201
        good = b"id,amount\n1,10.50\n2,3.25\n"
        status, report = send("POST", f"{base}/api/v1/tables/sales.orders/import?filename=orders.csv&branch=dev",
                              writer, data=good, content_type="text/csv")
        assert status == 200 and report["rows"] == 2 and report["created"], report
        bad = b"id,amount\n3,1.0\nfour,2.0\n"
        status, error = send("POST", f"{base}/api/v1/tables/sales.orders/import?filename=late.csv&branch=dev",
                             writer, data=bad, content_type="text/csv")
        assert status == 400 and "late.csv" in error["error"]["message"], error
        assert ".basin/uploads" not in error["error"]["message"]
        assert not any((lakehouse.home / ".basin" / "uploads").iterdir())  # nothing left behind

        # Namespaces and merge.
        assert send("POST", f"{base}/api/v1/namespaces", writer, {"name": "staging"})[0] == 201
        status, names = send("GET", f"{base}/api/v1/namespaces?ref=main", writer)
        assert status == 200 and names == ["staging"]
        status, merged = send("POST", f"{base}/api/v1/merge", writer, {"source": "dev"})
        assert status == 200 and merged["commit"] and merged["target"] == "main", merged
        status, body = send("POST", f"{base}/api/v1/query", writer, {"sql": "SELECT count(*) AS n FROM sales.orders"})
        assert body["rows"] == [{"n": 2}]
        assert send("DELETE", f"{base}/api/v1/namespaces/sales", writer)[0] == 409  # not empty
        assert send("DELETE", f"{base}/api/v1/namespaces/staging", writer)[0] == 200

        # Tokens over HTTP are for admins.
        assert send("GET", f"{base}/api/v1/tokens", writer)[0] == 403
        status, created = send("POST", f"{base}/api/v1/tokens", admin, {"name": "bi", "role": "reader"})
        assert status == 201 and created["secret"].startswith("basin_") and created["token"]["role"] == "reader"
        assert send("GET", f"{base}/api/v1/refs", created["secret"])[0] == 200
        status, listed = send("GET", f"{base}/api/v1/tokens", admin)
        assert sorted(t["role"] for t in listed) == ["admin", "reader", "writer"]
        assert all("hash" not in t and "secret" not in t for t in listed)
        assert send("DELETE", f"{base}/api/v1/tokens/{created['token']['id']}", admin)[0] == 204
        assert send("GET", f"{base}/api/v1/refs", created["secret"])[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_server_keeps_to_small_pages_unless_told(lakehouse):
    # `basin serve` turns transparent huge pages off for itself (PR_SET_THP_DISABLE; a first
    # touch of each 2 MiB page could compact memory and zero it all, docs/benchmarks.md); the
    # kernel shows the flag in the process's status. MIMALLOC_ALLOW_THP set leaves them on.
    if "THP_enabled" not in Path("/proc/self/status").read_text():
        pytest.skip("this kernel does not show THP_enabled in /proc/PID/status (before 5.0)")
    shown = {}
    plain = lakehouse.env
    for allow in (None, "1"):
        lakehouse.env = plain if allow is None else {**plain, "MIMALLOC_ALLOW_THP": allow}
        try:
            _, proc = start(lakehouse, "--no-auth")
        finally:
            lakehouse.env = plain
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            shown[allow] = re.search(r"THP_enabled:\s*(\d)", status).group(1)
        finally:
            proc.kill()
            proc.wait()
    assert shown == {None: "0", "1": "1"}, shown


def test_a_warm_server_answers_scans_from_kept_columns_as_the_files_do(lakehouse):
    """`[sql] column_cache`: the second scan of a table's files reads their columns decoded by
    the first (or kept on disk by a `basin query` process before), with the same answers as a
    fresh `basin query` process; a column older files lack (the schema grew) is read from the
    files, and a new commit's files are read too."""
    from pyiceberg.catalog.rest import RestCatalog
    from pyiceberg.types import StringType

    base, proc = start(lakehouse, "--no-auth")
    try:
        catalog = RestCatalog("basin", uri=base, warehouse="main")
        catalog.create_namespace("sales")

        def rows(ids, note=None):
            columns = {"id": pa.array(ids, pa.int64()), "amount": pa.array([i * 0.5 for i in ids], pa.float64())}
            if note is not None:
                columns["note"] = pa.array([f"{note} {i % 5}" for i in ids], pa.string())
            return pa.table(columns)

        table = catalog.create_table("sales.events", schema=rows([]).schema)
        table.append(rows(list(range(0, 3000))))
        table.append(rows(list(range(3000, 5000))))
        with catalog.load_table("sales.events").update_schema() as update:
            update.add_column("note", StringType())
        catalog.load_table("sales.events").append(rows(list(range(5000, 6000)), note="late arrival"))

        queries = ["SELECT id, amount FROM sales.events WHERE id % 250 = 7 ORDER BY id",
                   "SELECT note, count(*) AS n, sum(amount) AS s FROM sales.events GROUP BY note ORDER BY note",
                   "SELECT max(id) AS top, count(note) AS notes FROM sales.events"]

        def ask(sql):
            request = urllib.request.Request(base + "/api/v1/query", data=json.dumps({"sql": sql}).encode(),
                                             headers={"content-type": "application/json",
                                                      "cache-control": "no-cache"})
            with urllib.request.urlopen(request, timeout=60) as r:
                return json.loads(r.read())["rows"]

        def metric(name):
            with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
                found = re.search(rf"^{name} (\S+)", r.read().decode(), re.M)
            assert found, name
            return float(found.group(1))

        def all_equal(expected):
            for sql, answer in zip(queries, expected):
                assert ask(sql) == answer, sql

        expected = [lakehouse.json("query", sql) for sql in queries]
        assert len(expected[0]) == 24 and expected[2] == [{"top": 5999, "notes": 1000}], expected
        for _ in range(50):  # the first scans decode the columns in the background
            all_equal(expected)
            if metric("basin_sql_column_cache_hits_total") >= 3:
                break
            time.sleep(0.1)
        assert metric("basin_sql_column_cache_hits_total") >= 3
        # The `basin query` processes above kept what they decoded in `.basin/columns`
        # (`[sql] column_cache_disk`): the server reads those instead of decoding them.
        loads = metric("basin_sql_column_cache_disk_loads_total")
        assert loads >= 1 and metric("basin_sql_column_cache_fills_total") + loads >= 5
        # `note` is in the newest file only: refused for the two older ones.
        assert metric("basin_sql_column_cache_refusals_total") == 2
        assert metric("basin_sql_column_cache_limit_bytes") == 1 << 30
        assert metric("basin_sql_column_cache_bytes") > 0

        # A new commit adds a file: the next answers hold its rows.
        catalog.load_table("sales.events").append(rows([9000, 9001], note="later"))
        expected = [lakehouse.json("query", sql) for sql in queries]
        assert expected[2] == [{"top": 9001, "notes": 1002}], expected
        all_equal(expected)
    finally:
        proc.kill()
        proc.wait()
