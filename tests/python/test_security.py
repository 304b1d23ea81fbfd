"""`basin serve` tried as a hostile caller would: a reader token reaching files through SQL
at each front door (HTTP, `--remote`, Postgres; the console speaks HTTP), queries with no
end, slow clients and oversized uploads. Each must fail with a clear error while the server
stays within its limits and keeps answering."""

import contextlib
import http.client
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from conftest import BASIN, metric, send, start_server, wait_for

LIMITS = """
[sql]
query_timeout = "2s"
memory_limit = "512MiB"
query_memory_limit = "64MiB"
table_cache = 8

[server]
header_read_timeout = "1s"
max_upload_size = "1KiB"
json_max_rows = 1000
max_body_size = "64KiB"
"""


@pytest.fixture
def hostile(orders, tmp_path):
    """A served lakehouse with tight limits, a reader token, and a secret file beside it."""
    (orders.home / "basin.toml").write_text(LIMITS)
    reader = orders("token", "create", "--role", "reader").strip()
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    base, proc = start_server(orders, "--pg-listen", "127.0.0.1:0")
    yield {"base": base, "pg": proc.port, "reader": reader, "secret": secret, "proc": proc,
           "out": tmp_path / "written.csv", "home": orders.home}
    proc.kill()
    proc.wait()


def file_attacks(secret, out):
    """SQL that would read `secret` or write `out`, and the statement kind named in the refusal."""
    return [
        (f"CREATE SCHEMA s; CREATE EXTERNAL TABLE s.t STORED AS CSV LOCATION '{secret}'; SELECT * FROM s.t",
         "CREATE SCHEMA"),
        (f"CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{secret}'", "CREATE EXTERNAL TABLE"),
        (f"COPY (SELECT 1 AS a) TO '{out}'", "COPY"),
        (f"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{out}'", "COPY"),
        ("INSERT INTO sales.orders VALUES (9, 1.00)", "INSERT INTO"),
    ]


def test_a_reader_cannot_touch_files_through_http_or_remote(hostile):
    h = hostile
    for sql, kind in file_attacks(h["secret"], h["out"]):
        status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"], {"sql": sql})
        assert status == 400, (sql, status, answer)
        assert answer["error"]["message"].startswith(f"{kind} is not allowed"), answer
        assert "hunter2" not in json.dumps(answer)

        env = {**os.environ, "BASIN_REMOTE": h["base"], "BASIN_TOKEN": h["reader"]}
        env.pop("BASIN_HOME", None)
        remote = subprocess.run([BASIN, "query", sql], capture_output=True, text=True, env=env, cwd="/")
        assert remote.returncode == 1, remote
        assert f"{kind} is not allowed" in remote.stderr and "hint:" in remote.stderr, remote.stderr
    assert not h["out"].exists()

    # What readers may do still works: queries, EXPLAIN, views for one script.
    status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"],
                          {"sql": "CREATE VIEW big AS SELECT * FROM sales.orders WHERE amount > 5; "
                                  "SELECT count(*) AS n FROM big"})
    assert status == 200 and answer["rows"] == [{"n": 1}], answer
    status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"],
                          {"sql": "EXPLAIN SELECT * FROM sales.orders"})
    assert status == 200 and answer["row_count"] >= 1, answer


def test_a_reader_cannot_touch_files_through_postgres(hostile):
    h = hostile
    refused_by_policy = set()
    with psycopg.connect(host="127.0.0.1", port=h["pg"], user="analyst", password=h["reader"],
                         dbname="main", autocommit=True) as conn:
        for sql, kind in file_attacks(h["secret"], h["out"]):
            statement = sql.split("; ")[-1] if kind == "CREATE SCHEMA" else sql
            statement = sql.split("; ")[0] if kind == "CREATE SCHEMA" else statement
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(statement)
            # The Postgres dialect has no CREATE EXTERNAL TABLE: a syntax error, never run.
            if refused.value.sqlstate == "42601":
                continue
            assert refused.value.sqlstate == "25006", (statement, refused.value)
            assert f"{kind} is not allowed" in str(refused.value), (statement, refused.value)
            refused_by_policy.add(kind)
        assert conn.execute("SELECT count(*) FROM sales.orders").fetchone() == (2,)
    assert refused_by_policy >= {"CREATE SCHEMA", "COPY", "INSERT INTO"}, refused_by_policy
    assert not h["out"].exists()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_queries_with_no_end_stop_at_their_limits_and_the_server_keeps_answering(hostile):
    h = hostile
    pid = h["proc"].pid
    peak = [0.0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        healthy = []

        def probe():
            while not done.is_set():
                with urllib.request.urlopen(f"{h['base']}/healthz", timeout=5) as r:
                    healthy.append(r.status)
                time.sleep(0.2)

        prober = threading.Thread(target=probe)
        prober.start()

        # No end, no memory: stopped by the time limit.
        started = time.monotonic()
        status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"],
                              {"sql": "SELECT count(*) FROM range(100000000000)"})
        assert status == 504, answer
        assert "time limit of 2s" in answer["error"]["message"] and "query_timeout" in answer["error"]["hint"]
        assert time.monotonic() - started < 30

        # Endless rows over JSON: cut at the row cap, and said so.
        status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"],
                              {"sql": "SELECT * FROM range(10000000000)"})
        assert status == 200 and answer["truncated"] is True, answer.get("error")
        assert answer["row_count"] == 1000 and len(answer["rows"]) == 1000
        assert "json_max_rows" in answer["notice"]

        # Endless rows as an Arrow stream: no cap, so the time limit breaks the stream off.
        request = urllib.request.Request(
            f"{h['base']}/api/v1/query", method="POST",
            data=json.dumps({"sql": "SELECT * FROM range(10000000000)"}).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {h['reader']}",
                     "accept": "application/vnd.apache.arrow.stream"})
        with pytest.raises(Exception):
            with urllib.request.urlopen(request, timeout=60) as r:
                while r.read(1 << 20):
                    pass

        # More memory than a query's share: a hash join's build side cannot spill.
        status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"], {
            "sql": "SELECT count(*) FROM range(20000000) a JOIN range(20000000) b ON a.value = b.value"})
        assert status in (422, 504), answer
        if status == 422:
            assert "memory" in answer["error"]["message"], answer

        # Through Postgres: the server's limit, and the client's own statement_timeout.
        with psycopg.connect(host="127.0.0.1", port=h["pg"], user="analyst", password=h["reader"],
                             dbname="main", autocommit=True) as conn:
            with pytest.raises(psycopg.Error) as stopped:
                conn.execute("SELECT count(*) FROM range(100000000000)").fetchall()
            assert stopped.value.sqlstate == "57014", stopped.value
            assert "time limit of 2s" in str(stopped.value)
            conn.execute("SET statement_timeout = 300")
            with pytest.raises(psycopg.Error) as stopped:
                conn.execute("SELECT count(*) FROM range(100000000000)").fetchall()
            assert "time limit of 0.300s" in str(stopped.value), stopped.value
            assert conn.execute("SELECT count(*) FROM sales.orders").fetchone() == (2,)
    finally:
        done.set()
        watcher.join()
        prober.join()
    assert healthy and all(s == 200 for s in healthy)
    assert peak[0] < 1024, f"the server grew to {peak[0]:.0f} MiB"


def test_deeply_nested_calls_are_stopped_within_the_parse_budget(hostile):
    """Regression (found by fuzzing): the Postgres dialect's parse time doubles with each
    nested function call; 40 levels would hold a core for hours, out of the timeout's reach.
    The parse counts its work and stops at its budget (`[sql] parse_steps_per_token`)."""
    h = hostile
    with psycopg.connect(host="127.0.0.1", port=h["pg"], user="analyst", password=h["reader"],
                         dbname="main", autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("SELECT " + "abs(" * 40 + "1" + ")" * 40)
        assert refused.value.sqlstate == "54001", refused.value
        assert "[sql] parse_steps_per_token" in str(refused.value)
        assert conn.execute("SELECT abs(abs(abs(-2)))").fetchone() == (2,)
    request = urllib.request.Request(f"{h['base']}/metrics", headers={"authorization": f"Bearer {h['reader']}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert 'basin_limit_hits_total{limit="parse_steps_per_token"} 1' in r.read().decode()


def doubling(levels, first="SELECT 1 AS x"):
    """WITH queries each reading the one before twice: 2^levels copies of the first."""
    ctes = [f"t0 AS ({first})"] + [
        f"t{i} AS (SELECT x FROM t{i - 1} UNION ALL SELECT x FROM t{i - 1})" for i in range(1, levels + 1)]
    return f"WITH {', '.join(ctes)} SELECT count(*) AS n FROM t{levels}"


def test_with_queries_that_multiply_are_refused_before_they_are_planned(hostile, orders):
    """Regression (found by a hostile review): forty WITH queries each reading the one before
    twice are a few hundred bytes and 2^40 copies once planned; planning 18 levels held every
    planning thread for minutes, past the client's leaving, and other tokens' queries waited.
    They are counted on the parsed statement and refused (`[sql] max_plan_nodes`), at every
    door; views built the same way in a script are refused where they multiply past it; a
    statement that reads its WITH queries a few times still runs."""
    h = hostile
    other = orders("token", "create", "--role", "reader").strip()
    status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"], {"sql": doubling(40)})
    assert status == 422 and "`[sql] max_plan_nodes`" in answer["error"]["message"], answer
    assert answer["error"]["hint"], answer
    with psycopg.connect(host="127.0.0.1", port=h["pg"], user="analyst", password=h["reader"],
                         dbname="main", autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(doubling(40))
        assert refused.value.sqlstate == "54001", refused.value
        views = ["CREATE VIEW v0 AS SELECT 1 AS x"] + [
            f"CREATE VIEW v{i} AS SELECT x FROM v{i - 1} UNION ALL SELECT x FROM v{i - 1}" for i in range(1, 41)]
        status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"],
                              {"sql": "; ".join(views) + "; SELECT count(*) FROM v40"})
        assert status == 422 and "`[sql] max_plan_nodes`" in answer["error"]["message"], answer
        # The same through a subquery of `= ANY`, which is measured where it sits.
        views = ["CREATE VIEW w0 AS SELECT 1 AS x"] + [
            f"CREATE VIEW w{i} AS SELECT x FROM w{i - 1} WHERE x = ANY (SELECT x FROM w{i - 1})"
            for i in range(1, 41)]
        status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"],
                              {"sql": "; ".join(views) + "; SELECT count(*) FROM w40"})
        assert status == 422 and "`[sql] max_plan_nodes`" in answer["error"]["message"], answer
        # Doubled a few times, it runs.
        assert conn.execute(doubling(5)).fetchone() == (32,)
    status, answer = send("POST", f"{h['base']}/api/v1/query", other, {"sql": "SELECT 2 AS two"})
    assert (status, answer["rows"]) == (200, [{"two": 2}]), answer
    assert metric(h["base"], h["reader"], r'basin_limit_hits_total\{limit="max_plan_nodes"\}') == 4


def test_metrics_count_the_limits(hostile):
    h = hostile
    send("POST", f"{h['base']}/api/v1/query", h["reader"], {"sql": "SELECT count(*) FROM range(100000000000)"})
    # The second query finds the table loaded by the first (`[sql] table_cache`); the third,
    # asking as the first did, is answered from the result cache (`[sql] result_cache`).
    count = "SELECT count(*) AS n FROM sales.orders"
    for sql in [count, count + " -- again", count]:
        status, answer = send("POST", f"{h['base']}/api/v1/query", h["reader"], {"sql": sql})
        assert status == 200 and answer["rows"] == [{"n": 2}], answer
    request = urllib.request.Request(f"{h['base']}/metrics", headers={"authorization": f"Bearer {h['reader']}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    assert "basin_query_timeouts_total 1" in text, text
    assert "basin_sql_query_memory_limit_bytes 67108864" in text
    assert "basin_http_connections " in text
    assert "basin_sql_table_cache_limit_tables 8" in text
    hits = re.search(r"^basin_sql_table_cache_hits_total (\d+)", text, re.M)
    assert hits and int(hits.group(1)) >= 1, text
    assert "basin_sql_result_cache_limit_bytes 67108864" in text
    answered = re.search(r"^basin_sql_result_cache_hits_total (\d+)", text, re.M)
    assert answered and int(answered.group(1)) == 1, text


def test_bodies_over_the_limit_are_refused_at_every_door_and_counted(hostile):
    """`[server] max_body_size`: a JSON body past it gets 413 naming the setting, through the
    API, the Iceberg REST catalog (in the spec's error shape) and a function call; bodies
    under it are served; each refusal is counted."""
    h = hostile
    writer = subprocess.run([BASIN, "--home", str(h["home"]), "token", "create", "--role", "writer"],
                            capture_output=True, text=True, check=True).stdout.strip()
    padding = "x" * (100 << 10)
    status, body = send("POST", f"{h['base']}/api/v1/query", h["reader"], {"sql": f"SELECT '{padding}' AS a"})
    assert status == 413 and "max_body_size" in body["error"]["message"], body
    assert body["error"]["kind"] == "Limit" and body["error"]["hint"]
    status, body = send("POST", f"{h['base']}/v1/main/namespaces", writer,
                        {"namespace": ["big"], "properties": {"comment": padding}})
    assert status == 413 and body["error"]["code"] == 413 and "max_body_size" in body["error"]["message"], body
    status, body = send("POST", f"{h['base']}/fn/anything", writer, {"payload": padding})
    assert status == 413 and "max_body_size" in body["error"]["message"], body
    status, body = send("POST", f"{h['base']}/hooks/anything", writer, {"payload": padding})
    assert status == 413 and "max_body_size" in body["error"]["message"], body
    # Under it, served.
    status, body = send("POST", f"{h['base']}/api/v1/query", h["reader"], {"sql": f"SELECT '{'x' * 1000}' AS a"})
    assert status == 200, body
    request = urllib.request.Request(f"{h['base']}/metrics", headers={"authorization": f"Bearer {h['reader']}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert 'basin_limit_hits_total{limit="max_body_size"} 4' in r.read().decode()


def test_callers_without_a_token_cannot_make_up_metric_series(hostile):
    """Every request is counted by method and route before its token is checked: made-up
    methods and paths are counted as `other`, not as new series that live as long as the
    server."""
    h = hostile
    host, port = h["base"].removeprefix("http://").split(":")
    for i in range(3):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(f"MADEUP{i}X" * 50, "/healthz")
        conn.getresponse().read()
        conn.close()
        send("GET", f"{h['base']}/v1/a{i}/b/c/d/e/f/g/h/i")
    request = urllib.request.Request(f"{h['base']}/metrics", headers={"authorization": f"Bearer {h['reader']}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    assert "MADEUP" not in text and "/b/c/d" not in text, text
    counted = re.findall(r'^basin_http_requests_total\{method="other",route="/healthz",status="\d+"\} (\d+)', text, re.M)
    assert sum(map(int, counted)) == 3, text
    assert re.search(r'^basin_http_requests_total\{method="GET",route="other",status="\d+"\} 3$', text, re.M), text


def test_a_client_that_stops_reading_gives_its_connection_back(orders):
    """A download nobody reads: once the client has taken nothing for `[server]
    write_timeout`, the server closes the connection (and drops the query), however long
    the query may run."""
    (orders.home / "basin.toml").write_text('[sql]\nquery_timeout = "10m"\n\n[server]\nwrite_timeout = "2s"\n')
    base, proc = start_server(orders, "--no-auth")
    try:
        host, port = base.removeprefix("http://").split(":")
        body = json.dumps({"sql": "SELECT value, value * 2 AS twice FROM range(1000000000)", "format": "csv"})
        with socket.create_connection((host, int(port)), timeout=60) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall((f"POST /api/v1/query HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
                       f"content-length: {len(body)}\r\n\r\n{body}").encode())
            assert s.recv(16).startswith(b"HTTP/1.1 200"), "the answer started"
            # Read nothing more; the server gives up within seconds.
            hit = lambda: re.search(r'^basin_limit_hits_total\{limit="write_timeout"\} (\d+)',
                                    urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode(), re.M)
            deadline = time.monotonic() + 60
            while not hit() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert hit() and int(hit().group(1)) == 1
            # The closed connection's task ends just after the count: wait for it to go.
            metrics = lambda: urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
            wait_for(lambda: "basin_http_connections 1\n" in metrics(), 30)  # only this request's
            assert "basin_sql_memory_reserved_bytes 0" in metrics()
    finally:
        proc.kill()
        proc.wait()


def test_a_slow_client_is_cut_off_by_the_header_timeout(hostile):
    host, port = hostile["base"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        started = time.monotonic()
        answer = s.recv(4096)  # the server answers 408 or closes
        waited = time.monotonic() - started
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    assert waited < 8, waited
    with urllib.request.urlopen(f"{hostile['base']}/healthz", timeout=5) as r:
        assert r.status == 200
    request = urllib.request.Request(f"{hostile['base']}/metrics", headers={"authorization": f"Bearer {hostile['reader']}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert 'basin_limit_hits_total{limit="header_read_timeout"} 1' in r.read().decode()


def test_clients_past_max_connections_wait_their_turn_and_are_counted(orders):
    """`[server] max_connections = 1` and no reserved slots: a second client (HTTP or
    Postgres) waits until the first leaves (within `handshake_timeout`), then is served;
    each wait is counted. A connection holds its slot once it has shown itself: here, a
    kept-alive HTTP connection that has asked once."""
    (orders.home / "basin.toml").write_text(
        '[server]\nmax_connections = 1\nreserved_connections = 0\nheader_read_timeout = "30s"\n'
        'handshake_timeout = "30s"\n')
    reader = orders("token", "create", "--role", "reader").strip()
    base, proc = start_server(orders, "--pg-listen", "127.0.0.1:0")
    try:
        host, port = base.removeprefix("http://").split(":")
        served = {}

        def second(name, call):
            served[name] = call()

        first = http.client.HTTPConnection(host, int(port), timeout=30)
        first.request("GET", "/healthz")
        assert first.getresponse().read() == b"ok\n"  # holds the one HTTP slot, kept alive
        waiting = threading.Thread(target=second, args=("http", lambda: urllib.request.urlopen(
            f"{base}/healthz", timeout=60).read()))
        waiting.start()
        time.sleep(1.0)
        assert "http" not in served
        first.close()
        waiting.join(60)
        assert served["http"] == b"ok\n"

        login = dict(host="127.0.0.1", port=proc.port, user="bi", password=reader, dbname="main", connect_timeout=60)
        with psycopg.connect(**login):
            waiting = threading.Thread(target=second, args=("pg", lambda: psycopg.connect(**login).execute(
                "SELECT count(*) FROM sales.orders").fetchone()[0]))
            waiting.start()
            time.sleep(1.0)
            assert "pg" not in served
        waiting.join(60)
        assert served["pg"] == 2

        request = urllib.request.Request(f"{base}/metrics", headers={"authorization": f"Bearer {reader}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read().decode()
        for limit in ("max_connections", "pg_max_connections"):
            hits = re.search(rf'basin_limit_hits_total{{limit="{limit}"}} (\d+)', text)
            assert hits and int(hits.group(1)) >= 1, (limit, text)
    finally:
        proc.kill()
        proc.wait()


def stream_chunks(base: str, path: str, token: str, chunk: bytes, count: int) -> http.client.HTTPResponse:
    """POSTs `count` chunks of a body without a length (chunked), and stops sending as soon as
    the server answers: a server that refuses mid-stream closes the connection, and writing on
    would race its answer (a broken pipe instead of the status)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("content-type", "text/csv")
    conn.putheader("authorization", f"Bearer {token}")
    conn.putheader("transfer-encoding", "chunked")
    conn.endheaders()
    for _ in range(count):
        if select.select([conn.sock], [], [], 0.2)[0]:
            break  # the server has answered
        try:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            break
    else:
        conn.send(b"0\r\n\r\n")
    return conn.getresponse()


def test_uploads_past_the_limit_are_refused_and_leave_nothing(hostile, orders, tmp_path):
    h = hostile
    writer = orders("token", "create", "--role", "writer").strip()
    big = tmp_path / "big.csv"
    # 4 MB: big enough that a server refusing it unread would reset the connection while the
    # client still sends (a broken pipe instead of the refusal, as it once was).
    big.write_text("id,amount\n" + "".join(f"{i},1.00\n" for i in range(400_000)))
    env = {**os.environ, "BASIN_REMOTE": h["base"], "BASIN_TOKEN": writer}
    env.pop("BASIN_HOME", None)
    out = subprocess.run([BASIN, "import", str(big), "--table", "sales.big"], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode == 1, out
    assert "upload limit of 1 KiB" in out.stderr and "max_upload_size" in out.stderr, out.stderr
    # Streamed without a length: cut off while streaming.
    refused = stream_chunks(h["base"], "/api/v1/tables/sales.big/import?filename=big.csv", writer,
                            b"1,1.00\n" * 100, count=10)
    assert refused.status == 413, (refused.status, refused.read())
    uploads = h["home"] / ".basin" / "uploads"
    wait_for(lambda: not uploads.exists() or not any(uploads.iterdir()), 10)
    assert "sales.big" not in orders("table", "ls")


def slow_upload(base, token, home):
    """An upload of one row into sales.orders that `token` has started and not finished (its
    body chunked, its end not sent): send `0\\r\\n\\r\\n` to end it."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    slow = http.client.HTTPConnection(host, int(port), timeout=30)
    slow.putrequest("POST", "/api/v1/tables/sales.orders/import?filename=more.csv")
    for name, value in [("content-type", "text/csv"), ("authorization", f"Bearer {token}"),
                        ("transfer-encoding", "chunked")]:
        slow.putheader(name, value)
    slow.endheaders()
    first = b"id,amount\n7,7.00\n"
    slow.send(b"%x\r\n%s\r\n" % (len(first), first))
    uploads = home / ".basin" / "uploads"
    before = len(list(uploads.iterdir())) if uploads.exists() else 0
    wait_for(lambda: uploads.exists() and len(list(uploads.iterdir())) > before, 10)  # being received
    return slow


def test_uploads_past_max_uploads_are_turned_away_until_one_ends(orders):
    """`[server] max_uploads = 1`: while one upload streams in, another gets 503 with
    Retry-After, naming the setting, and is counted; once the first ends, the next one lands."""
    (orders.home / "basin.toml").write_text("[server]\nmax_uploads = 1\n")
    writer = orders("token", "create", "--role", "writer").strip()
    base, proc = start_server(orders)
    try:
        slow = slow_upload(base, writer, orders.home)

        status, body = send("POST", f"{base}/api/v1/tables/sales.orders/import?filename=other.csv", writer,
                            data=b"id,amount\n8,8.00\n", content_type="text/csv")
        assert status == 503 and "max_uploads" in body["error"]["message"] and body["error"]["hint"], body

        slow.send(b"0\r\n\r\n")
        assert slow.getresponse().status == 200
        status, body = send("POST", f"{base}/api/v1/tables/sales.orders/import?filename=other.csv", writer,
                            data=b"id,amount\n8,8.00\n", content_type="text/csv")
        assert status == 200, body
        assert orders("query", "SELECT count(*) AS n FROM sales.orders", "--format", "csv") == "n\n4\n"
        request = urllib.request.Request(f"{base}/metrics", headers={"authorization": f"Bearer {writer}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert 'basin_limit_hits_total{limit="max_uploads"} 1' in r.read().decode()
    finally:
        proc.kill()
        proc.wait()


def test_a_failure_on_the_server_shows_callers_no_paths(hostile):
    """A table whose files are broken (not Parquet): the caller learns that the server failed,
    and where the details are; the paths go to the server's log only. Every answer says
    `nosniff`."""
    base, reader, home = hostile["base"], hostile["reader"], str(hostile["home"])
    for data in (hostile["home"] / ".basin" / "warehouse").rglob("*.parquet"):
        data.write_bytes(b"this is not a Parquet file, and it is long enough to look for a footer")
    request = urllib.request.Request(f"{base}/api/v1/query", method="POST",
                                     data=json.dumps({"sql": "SELECT * FROM sales.orders"}).encode(),
                                     headers={"authorization": f"Bearer {reader}",
                                              "content-type": "application/json", "x-request-id": "broken-files"})
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(request, timeout=30)
    answer = failed.value
    body = json.loads(answer.read())
    assert answer.code == 500 and body["error"]["kind"] == "Io", body
    assert "its log has the details" in body["error"]["message"] and "x-request-id" in body["error"]["hint"]
    assert answer.headers["x-request-id"] == "broken-files"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert home not in json.dumps(body) and "footer" not in json.dumps(body)
    with urllib.request.urlopen(f"{base}/healthz") as ok:
        assert ok.headers["x-content-type-options"] == "nosniff"

    with psycopg.connect(host="127.0.0.1", port=hostile["pg"], user="basin", password=reader,
                         dbname="main") as conn:
        with pytest.raises(psycopg.errors.InternalError_) as pg_failed:
            conn.execute("SELECT * FROM sales.orders").fetchall()
    assert "its log has the details" in str(pg_failed.value) and home not in str(pg_failed.value)

    hostile["proc"].kill()
    log = hostile["proc"].stderr.read()
    assert re.search(r"broken-files.*Corrupt footer", log), log[-2000:]


def self_signed(folder):
    """A certificate authority (ca.pem) and a certificate it signed for localhost and
    127.0.0.1 with its key (cert.pem, key.pem), as PEM files in `folder`; returns ca.pem."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def issued(subject, key, issuer, issuer_key, ca):
        name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = issued("basin test CA", ca_key, "basin test CA", ca_key, ca=True)
    cert = issued("localhost", key, "basin test CA", ca_key, ca=False)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "ca.pem"


def this_machines_address():
    """An address of this machine other than loopback (the one its default route leaves by)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("198.51.100.1", 9))  # no packet is sent: this only picks a route
        address = probe.getsockname()[0]
    assert not address.startswith("127."), "this machine has no address but loopback"
    return address


def test_both_doors_serve_tls_and_postgres_logins_from_afar_need_it(orders, tmp_path):
    """With `[server] tls_cert` and `tls_key`, HTTP is HTTPS only and the Postgres door
    answers sslmode=require (verify-full passes with the certificate); a plain Postgres
    login from another machine is refused, one from this machine (loopback) is not."""
    import ssl

    cert = self_signed(orders.home)
    (orders.home / "basin.toml").write_text('[server]\ntls_cert = "cert.pem"\n')
    half = subprocess.run([BASIN, "--home", str(orders.home), "serve", "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, env=orders.env, timeout=60)
    assert half.returncode != 0 and "tls_cert and tls_key go together" in half.stderr, half.stderr
    (orders.home / "basin.toml").write_text('[server]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    reader = orders("token", "create", "--role", "reader").strip()
    base, proc = start_server(orders, "--pg-listen", "0.0.0.0:0")
    try:
        assert base.startswith("https://"), base
        trusted = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"{base}/healthz", context=trusted, timeout=30) as ok:
            assert ok.read() == b"ok\n"
        request = urllib.request.Request(f"{base}/api/v1/query", method="POST",
                                         data=json.dumps({"sql": "SELECT count(*) AS n FROM sales.orders"}).encode(),
                                         headers={"authorization": f"Bearer {reader}", "content-type": "application/json"})
        with urllib.request.urlopen(request, context=trusted, timeout=30) as answer:
            assert json.load(answer)["rows"] == [{"n": 2}]
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
            urllib.request.urlopen(base.replace("https://", "http://") + "/healthz", timeout=30).read()
        # `basin --remote https://...` trusts the server's own certificate when told to.
        remote = [BASIN, "--remote", base, "--token", reader, "query", "SELECT count(*) AS n FROM sales.orders",
                  "--format", "csv"]
        untrusted = subprocess.run(remote, capture_output=True, text=True, timeout=60)
        assert untrusted.returncode != 0 and "--ca-cert" in untrusted.stderr, untrusted.stderr
        trusting = subprocess.run([*remote, "--ca-cert", str(cert)], capture_output=True, text=True, timeout=60)
        assert trusting.stdout == "n\n2\n", trusting.stderr

        far = this_machines_address()
        login = dict(port=proc.port, user="bi", password=reader, dbname="main", connect_timeout=10)
        with psycopg.connect(host=far, sslmode="require", **login) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0] == 2
        with psycopg.connect(host="127.0.0.1", sslmode="verify-full", sslrootcert=str(cert), **login) as conn:
            assert conn.pgconn.ssl_in_use
        with pytest.raises(psycopg.OperationalError, match="over TLS only"):
            psycopg.connect(host=far, sslmode="disable", **login)
        # A cancel request carries no token and libpq sends it unencrypted: taken from afar
        # (this one names no connection, so it stops nothing, and gets no error back).
        with socket.create_connection((far, proc.port)) as sock:
            sock.sendall(struct.pack("!ii", 16, 80877102) + struct.pack("!ii", 1, 2))
            sock.settimeout(30)
            assert sock.recv(4096) == b""
        with psycopg.connect(host="127.0.0.1", sslmode="disable", **login) as conn:
            assert not conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1").fetchone()[0] == 1
    finally:
        proc.kill()
        proc.wait()


def test_idle_sockets_take_no_slot_and_the_reserved_ones_serve_healthz_and_admins(orders):
    """Idle sockets from anyone used to take every slot before a byte arrived. Now a client
    address holds at most `max_connections_per_client`, a connection takes a slot only once
    its first bytes (or its Postgres login) come within `handshake_timeout`, and with every
    slot taken the `reserved_connections` still serve `/healthz` and admins."""
    (orders.home / "basin.toml").write_text(
        '[server]\nmax_connections = 2\nreserved_connections = 1\nmax_connections_per_client = 3\n'
        'handshake_timeout = "1s"\n')
    reader = orders("token", "create", "--role", "reader").strip()
    admin = orders("token", "create", "--role", "admin").strip()
    base, proc = start_server(orders, "--pg-listen", "127.0.0.1:0")
    host, port = base.removeprefix("http://").split(":")

    def connect(source: str, door: int = int(port)) -> socket.socket:
        return socket.create_connection((host, door), timeout=10, source_address=(source, 0))

    def healthz(source: str) -> int:
        conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
        conn.close()
        return status

    try:
        # 40 idle sockets from one address: three wait, the rest are closed at once.
        idle = [connect("127.0.0.5") for _ in range(40)]
        closed = 0
        for s in idle:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except (TimeoutError, ConnectionResetError):
                pass
        assert closed >= 37, closed
        # Meanwhile another client is served, quickly.
        started = time.monotonic()
        assert healthz("127.0.0.2") == 200
        assert time.monotonic() - started < 0.5
        # The three are sent away after the handshake time, having sent nothing.
        time.sleep(1.5)
        for s in idle:
            s.settimeout(2)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
            s.close()

        # Two clients hold the two slots (kept-alive connections that have asked once).
        held = []
        for source in ("127.0.0.6", "127.0.0.7"):
            conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b"ok\n"
            held.append(conn)
        # A reader is told the door is full; /healthz and an admin are served.
        status, answer = send("GET", f"{base}/api/v1/refs", reader)
        assert status == 503 and "max_connections" in answer["error"]["message"], (status, answer)
        assert healthz("127.0.0.8") == 200
        status, _ = send("GET", f"{base}/api/v1/refs", admin)
        assert status == 200
        for conn in held:
            conn.close()
        wait_for(lambda: send("GET", f"{base}/api/v1/refs", reader)[0] == 200, 10)

        # Postgres: two logins hold the slots; a reader's third waits, then is refused
        # (53300); an admin's is let in.
        login = dict(host="127.0.0.1", port=proc.port, dbname="main", connect_timeout=10)
        first = psycopg.connect(user="bi", password=reader, **login)
        second = psycopg.connect(user="bi", password=reader, **login)
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(user="bi", password=reader, **login)
        assert "too many clients" in str(refused.value), refused.value
        with psycopg.connect(user="ops", password=admin, **login) as ops:
            assert ops.execute("SELECT count(*) FROM sales.orders").fetchone() == (2,)
        first.close()
        second.close()

        request = urllib.request.Request(f"{base}/metrics", headers={"authorization": f"Bearer {admin}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read().decode()
        for limit in ("max_connections_per_client", "handshake_timeout", "max_connections", "pg_max_connections"):
            hits = re.search(rf'basin_limit_hits_total{{limit="{limit}"}} (\d+)', text)
            assert hits and int(hits.group(1)) >= 1, (limit, text)
    finally:
        proc.kill()
        proc.wait()


CALLS = '''
import basin
import pyarrow as pa


@basin.python("3.11", timeout="5s")
@basin.http()
def private(event, context):
    print("looked at", event["card"][-4:])
    return {"approved": event["card"].startswith("4")}


@basin.python("3.11", timeout="5s")
@basin.http("/hooks/public", to="raw.public")
def public(event, context):
    return pa.table({"n": [event["n"]]})
'''


def test_readers_see_no_call_bodies_or_results_of_functions_whose_output_they_cannot_read(lakehouse, tmp_path):
    """A `/fn` call's body and result are its caller's: a reader listing or opening events
    sees them only for a function that writes a table (which the reader may read anyway);
    the state, error and logs stay. Writers see everything."""
    functions = tmp_path / "calls"
    functions.mkdir()
    (functions / "calls.py").write_text(CALLS)
    lakehouse("deploy", str(functions))
    reader = lakehouse("token", "create", "--role", "reader").strip()
    writer = lakehouse("token", "create", "--role", "writer").strip()
    base, proc = start_server(lakehouse)
    try:
        status, answer = send("POST", f"{base}/fn/private", writer, {"card": "4111111111111111"})
        assert (status, answer) == (200, {"approved": True})
        assert send("POST", f"{base}/hooks/public", writer, {"n": 7})[0] == 200
        for token, sees in ((reader, False), (writer, True)):
            status, events = send("GET", f"{base}/api/v1/events", token)
            assert status == 200 and len(events) == 2, events
            by_function = {e["function"]: e for e in events}
            private, public = by_function["private"], by_function["public"]
            assert public["payload"] == {"n": 7}  # its table is readable anyway
            one = send("GET", f"{base}/api/v1/events/{private['id']}", token)[1]
            for event in (private, one):
                assert event["state"] == "succeeded" and "looked at 1111" in event["logs"]
                if sees:
                    assert event["payload"] == {"card": "4111111111111111"}
                    assert event["result"] == {"approved": True}
                else:
                    assert "4111" not in json.dumps(event), event
                    assert "redacted" in event["payload"] and event.get("result") is None, event
    finally:
        proc.kill()
        proc.wait()


ONLINE = '''
import socket

import basin


def attempt(address):
    try:
        socket.create_connection(address, timeout=5).close()
        return "allowed"
    except OSError as e:
        return type(e).__name__ + ": " + (e.strerror or str(e))


@basin.python("3.11", timeout="60s", internet=True)
@basin.http()
def online(event, context):
    with open("/etc/resolv.conf") as f:
        resolver = f.read()
    return {
        "outside": attempt((event["outside"], event["port"])),
        "basin": attempt(("127.0.0.1", event["basin"])),
        "gateway": attempt(("10.0.2.2", event["basin"])),
        "host": {a: attempt((a, event["basin"])) for a in event["host"]},
        "metadata": attempt(("169.254.169.254", 80)),
        "resolver": resolver,
    }
'''


@contextlib.contextmanager
def another_machine(tag: str, net: int):
    """A network namespace joined to this one by a veth pair: another machine, as far as
    TCP can tell. Yields its name, its address (10.`net`.M.2), the host's side of the pair
    (10.`net`.M.1, one of the host's own addresses) and the namespace's end of the pair."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root to make a network namespace")
    n = os.getpid() % 250
    name, host_side, out_side = f"basin-{tag}-{n}", f"b{tag}{n}h", f"b{tag}{n}o"
    subnet = f"10.{net}.{n}"
    run = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", host_side], capture_output=True)
    run("netns", "add", name)
    try:
        run("link", "add", host_side, "type", "veth", "peer", "name", out_side)
        run("link", "set", out_side, "netns", name)
        run("addr", "add", f"{subnet}.1/24", "dev", host_side)
        run("link", "set", host_side, "up")
        run("netns", "exec", name, "ip", "addr", "add", f"{subnet}.2/24", "dev", out_side)
        run("netns", "exec", name, "ip", "link", "set", out_side, "up")
        yield {"name": name, "address": f"{subnet}.2", "host_side": f"{subnet}.1", "link": out_side}
    finally:
        subprocess.run(["ip", "link", "del", host_side], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def outside_host():
    """A machine outside Basin's ([`another_machine`]) serving HTTP. Its address is reached
    through the host's routes, as any outside address would be."""
    with another_machine("out", 98) as machine:
        server = subprocess.Popen(["ip", "netns", "exec", machine["name"], sys.executable, "-m", "http.server",
                                   "8000", "--bind", machine["address"]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def listening():
                try:
                    socket.create_connection((machine["address"], 8000), timeout=1).close()
                    return True
                except OSError:
                    return False

            wait_for(listening, 10)
            yield {"address": machine["address"], "port": 8000, "host_side": machine["host_side"]}
        finally:
            server.kill()
            server.wait()


def host_addresses() -> list:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def test_a_function_with_the_internet_reaches_out_but_not_the_host(lakehouse, outside_host, tmp_path):
    """`internet=True` used to share the host's network: a function could call Basin's own
    API on 127.0.0.1, a database listening there, or anything on the host's addresses. Its
    worker now has a network of its own (slirp4netns) that leads out, walled off from the
    host's loopback, its own addresses and link-local ones."""
    functions = tmp_path / "online"
    functions.mkdir()
    (functions / "online.py").write_text(ONLINE)
    lakehouse("deploy", str(functions))
    base, proc = start_server(lakehouse, "--no-auth")
    port = int(base.rsplit(":", 1)[1])
    addresses = [a for a in host_addresses() if a != "127.0.0.1"]
    assert outside_host["host_side"] in addresses
    try:
        status, seen = send("POST", f"{base}/fn/online", None, {
            "outside": outside_host["address"], "port": outside_host["port"], "basin": port,
            "host": addresses})
        assert status == 200, seen
        assert seen["outside"] == "allowed", seen
        for what in ("basin", "gateway", "metadata"):
            assert seen[what] != "allowed", (what, seen)
        for address, result in seen["host"].items():
            assert "No route to host" in result, (address, seen)
        assert "nameserver 10.0.2.3" in seen["resolver"], seen
    finally:
        proc.kill()
        proc.wait()
    walls = json.loads(lakehouse("doctor", "--format", "json"))
    internet = next(w for w in walls["walls"] if w["wall"] == "internet")
    assert internet["in_force"] and "slirp4netns" in internet["how"], internet


VANISHING = r"""
import json, sys, threading, urllib.request, psycopg
base, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
endless = "SELECT count(*) FROM generate_series(1, 100000000000)"
over_http = urllib.request.Request(f"{base}/api/v1/query", data=json.dumps({"sql": endless}).encode(),
                                   headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
threading.Thread(target=urllib.request.urlopen, args=(over_http,), kwargs={"timeout": 300}).start()
connect = lambda: psycopg.connect(host=base.split("//")[1].split(":")[0], port=port, user="analyst",
                                  password=token, dbname="main", autocommit=True)
idle = connect()
connect().execute(endless)
"""


def test_a_client_machine_that_vanishes_gives_its_connections_and_statement_back(orders):
    """A client on another machine holds two Postgres connections, one idle and one running
    a statement with no row to send for minutes, and an HTTP request running one too; then
    its network goes (no FIN, no reset). The connections end and the statements stop once
    keepalive gives up (`[server] tcp_keepalive`, 2 s here: about 4 s of silence), not at
    `pg_idle_timeout` (1 h) or `query_timeout` (60 s here), and each is counted."""
    with another_machine("ka", 97) as machine:
        (orders.home / "basin.toml").write_text(
            '[sql]\nquery_timeout = "60s"\n\n[server]\ntcp_keepalive = "2s"\n')
        reader = orders("token", "create", "--role", "reader").strip()
        host = machine["host_side"]
        base, proc = start_server(orders, "--pg-listen", f"{host}:0", listen=f"{host}:0")
        see = lambda name: metric(base, reader, re.escape(name))
        client = subprocess.Popen(["ip", "netns", "exec", machine["name"], sys.executable, "-c", VANISHING,
                                   base, str(proc.port), reader])
        try:
            wait_for(lambda: see("basin_sql_queries_running") == 2 and see("basin_pg_connections") == 2, 20)
            # Answering probes all along: still there after several keepalive periods.
            time.sleep(5)
            assert see("basin_pg_connections") == 2 and see("basin_sql_queries_running") == 2
            vanished = time.monotonic()
            subprocess.run(["ip", "netns", "exec", machine["name"], "ip", "link", "set", machine["link"], "down"],
                           check=True)
            wait_for(lambda: see("basin_pg_connections") == 0 and see("basin_sql_queries_running") == 0, 15)
            assert time.monotonic() - vanished < 15
            assert see('basin_limit_hits_total{limit="pg_tcp_keepalive"}') == 2
            assert see('basin_limit_hits_total{limit="tcp_keepalive"}') == 1
        finally:
            client.kill()
            client.wait()
            proc.kill()
            proc.wait()



def test_a_strangers_flood_of_refused_requests_is_counted_not_recorded_one_by_one(orders):
    """Regression (found by a hostile review): every refused request went in the audit log,
    its 64 KiB path whole, and a refusal needs no token, so a stranger grew the catalog by
    135 MB in 3.5 s. Each field now keeps its first 512 bytes, and past `[server]
    audit_refusals_per_minute` in a minute refusals of callers with no token are counted, not
    recorded; a token's own refusals are always recorded."""
    (orders.home / "basin.toml").write_text("[server]\naudit_refusals_per_minute = 5\n")
    reader = orders("token", "create", "--role", "reader").strip()
    base, proc = start_server(orders, "--pg-listen", "127.0.0.1:0")
    try:
        long_path = "/api/v1/tables/" + "A" * 60_000
        for token in [None, "basin_not_a_token"] * 10:
            status, _ = send("GET", base + long_path, token)
            assert status == 401
        # Refused Postgres logins draw on the same bound.
        for _ in range(3):
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(host="127.0.0.1", port=proc.port, user="x", password="basin_wrong",
                                dbname="main", connect_timeout=10)
        assert metric(base, reader, r'basin_limit_hits_total\{limit="audit_refusals_per_minute"\}') == 18
        status, _ = send("POST", f"{base}/api/v1/branches", reader, {"name": "mine"})
        assert status == 403
    finally:
        proc.kill()
        proc.wait()
    entries = orders.json("audit", "ls", "-n", "1000")
    refused = [e for e in entries if e["action"].startswith("GET /api/v1/tables/")]
    assert len(refused) == 5, refused
    assert all(len(e["action"].encode()) <= 512 + 3 and e["action"].endswith("…") for e in refused), refused
    assert {e["outcome"] for e in refused} == {"401"}, refused
    assert not [e for e in entries if e["door"] == "postgres"], entries[:3]
    assert [e["outcome"] for e in entries if e["action"] == "POST /api/v1/branches"] == ["403"], entries[:3]


def test_one_writer_sends_at_most_max_uploads_per_writer_at_once(orders):
    """Found by a hostile review: `max_uploads` is the server's, so one writer trickling four
    uploads in held every slot for `request_timeout`. `[server] max_uploads_per_writer = 1`:
    a writer's second upload is turned away (503, Retry-After) while another writer's lands."""
    (orders.home / "basin.toml").write_text("[server]\nmax_uploads_per_writer = 1\n")
    ana = orders("token", "create", "--role", "writer").strip()
    ben = orders("token", "create", "--role", "writer").strip()
    base, proc = start_server(orders)
    upload = lambda token, name: send("POST", f"{base}/api/v1/tables/sales.orders/import?filename={name}",
                                      token, data=b"id,amount\n8,8.00\n", content_type="text/csv")
    try:
        slow = slow_upload(base, ana, orders.home)
        status, body = upload(ana, "second.csv")
        assert status == 503 and "max_uploads_per_writer" in body["error"]["message"], body
        assert body["error"]["hint"], body
        assert upload(ben, "other.csv")[0] == 200
        slow.send(b"0\r\n\r\n")
        assert slow.getresponse().status == 200
        assert upload(ana, "third.csv")[0] == 200
        assert orders("query", "SELECT count(*) AS n FROM sales.orders", "--format", "csv") == "n\n5\n"
        assert metric(base, ben, r'basin_limit_hits_total\{limit="max_uploads_per_writer"\}') == 1
    finally:
        proc.kill()
        proc.wait()
