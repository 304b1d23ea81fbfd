"""Schedules and HTTP triggers under a real `basin serve`: a schedule fires once per slot
across a SIGKILL and a restart, with slots missed while down skipped or run once; HTTP calls
answer synchronously (result, or error with status) or with 202 and an event id."""

import json
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from conftest import start_server, wait_for

SCHEDULED = '''
import basin
import pyarrow as pa


@basin.python("3.11", timeout="5s")
@basin.schedule("*/10 * * * * *", tz="Europe/Paris", missed="skip", to="ops.skipped")
def skipper(event, context):
    return pa.table({"slot": [event["slot_ms"]], "missed": [event["missed"]]})


@basin.python("3.11", timeout="5s")
@basin.schedule("*/10 * * * * *", tz="Europe/Paris", missed="run_once", to="ops.caught_up")
def catcher(event, context):
    return pa.table({"slot": [event["slot_ms"]], "missed": [event["missed"]]})
'''

CALLED = '''
import basin
import pyarrow as pa


@basin.python("3.11", timeout="5s")
@basin.http()
def score(event, context):
    if event.get("fail"):
        raise ValueError(f"cannot score order {event['id']}")
    print("scoring", event["id"])
    return {"id": event["id"], "score": event["amount"] * 2}


@basin.python("3.11", timeout="1s")
@basin.http()
def sleepy(event, context):
    import time
    time.sleep(30)


@basin.python("3.11", timeout="5s")
@basin.http(max_attempts=2)
def crashy(event, context):
    import os
    import signal
    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-invocation


@basin.python("3.11")
def echo(event, context):  # its trigger is in basin.toml
    return {"echo": event}


@basin.python("3.11", timeout="5s")
@basin.http(batch_size=20, batch_window="2s")
def batched(event, context):
    return {"n": event["n"], "invocation": context.invocation_id}


@basin.python("3.11", timeout="5s", concurrency=1)
@basin.http()
def single(event, context):
    import time
    time.sleep(1)
    return {"n": event["n"]}


@basin.python("3.11", timeout="5s")
@basin.http("/hooks/orders", to="raw.hooked")
def hooked(event, context):
    return pa.table({"id": [event["id"]], "amount": [event["amount"]]})
'''


def calls_at_once(base):
    """The server's `basin_calls_at_once_total`."""
    with urllib.request.urlopen(f"{base}/metrics") as response:
        lines = response.read().decode().splitlines()
    return next(float(line.split()[-1]) for line in lines if line.startswith("basin_calls_at_once_total "))


def deploy(lakehouse, folder, name, source):
    """Deploys the functions of `source`, written as FOLDER/NAME."""
    folder.mkdir()
    (folder / name).write_text(source)
    lakehouse("deploy", str(folder))


def slots(lakehouse, table):
    """(slot, missed) rows of TABLE, oldest first; empty while it does not exist."""
    out = lakehouse.run("query", f"SELECT slot, missed FROM ops.{table} ORDER BY slot", "--format", "json",
                        check=False)
    return [(r["slot"], r["missed"]) for r in json.loads(out.stdout)] if out.returncode == 0 else []


def test_schedules_fire_once_per_slot_across_a_restart(lakehouse, tmp_path):
    deploy(lakehouse, tmp_path / "scheduled", "ticks.py", SCHEDULED)

    _, server = start_server(lakehouse, "--no-auth")
    try:
        wait_for(lambda: slots(lakehouse, "skipped") and slots(lakehouse, "caught_up"))
        wait_for(lambda: "running" not in lakehouse("events", "ls", "--format", "json"))
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    last = max(slots(lakehouse, "skipped")[-1][0], slots(lakehouse, "caught_up")[-1][0])
    assert slots(lakehouse, "skipped")[-1][0] == slots(lakehouse, "caught_up")[-1][0] == last

    # Down through the next slot, and back 4.5 s after it: too late for it to count as on time.
    time.sleep(max(0.0, (last + 14_500) / 1000 - time.time()))
    _, server = start_server(lakehouse, "--no-auth")
    try:
        wait_for(lambda: slots(lakehouse, "skipped")[-1][0] == last + 20_000
                 and slots(lakehouse, "caught_up")[-1][0] == last + 20_000)
    finally:
        server.kill()
        server.wait()

    skipped, caught_up = slots(lakehouse, "skipped"), slots(lakehouse, "caught_up")
    for rows in (skipped, caught_up):
        assert len({slot for slot, _ in rows}) == len(rows), rows  # no slot fired twice
        assert all(b - a == 10_000 or b - a == 20_000 for (a, _), (b, _) in zip(rows, rows[1:])), rows
    # skip: nothing for the missed slot; run_once: one firing for it, saying one was missed.
    assert [s for s, _ in skipped if s > last] == [last + 20_000]
    assert [(s, m) for s, m in caught_up if s > last] == [(last + 10_000, 1), (last + 20_000, 0)]
    events = json.loads(lakehouse("events", "ls", "--function", "catcher", "-n", "1000", "--format", "json"))
    assert sorted(e["payload"]["slot_ms"] for e in events) == [s for s, _ in caught_up]
    assert all(e["state"] == "succeeded" and e["payload"]["scheduled_at"].endswith("+01:00") for e in events)


def post(url, body, headers=None):
    """(status, headers, JSON body) of a POST."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def test_http_calls_answer_synchronously_or_with_an_event_id(lakehouse, tmp_path):
    functions = tmp_path / "called"
    functions.mkdir()
    (functions / "calls.py").write_text(CALLED)
    (functions / "basin.toml").write_text('[triggers.nope.http]\n')
    typo = lakehouse.run("deploy", str(functions), check=False)
    assert typo.returncode != 0 and "[triggers.nope]: no function `nope`" in typo.stderr
    (functions / "basin.toml").write_text('[triggers.echo.http]\npath = "/hooks/echo"\n')
    plan = lakehouse("deploy", str(functions), "--plan")
    assert "http /hooks/orders" in plan and "http /hooks/echo" in plan
    lakehouse("deploy", str(functions))

    base, server = start_server(lakehouse, "--no-auth")
    try:
        status, headers, body = post(f"{base}/fn/score", {"id": 7, "amount": 1.5})
        assert (status, body) == (200, {"id": 7, "score": 3.0})
        assert lakehouse("events", "show", headers["basin-event"]).count("scoring 7") == 1
        # Run at once and stored settled once answered, by this node, with its metering.
        ran = lakehouse.json("events", "show", headers["basin-event"])
        assert (ran["state"], ran["attempts"], ran["result"]) == ("succeeded", 1, body), ran
        assert ran["node"], ran
        assert "score" in lakehouse("usage", "--by", "function")

        status, headers, body = post(f"{base}/fn/score", {"id": 8, "fail": True})
        assert status == 500
        assert "ValueError" in body["error"]["message"] and "cannot score order 8" in body["error"]["message"]
        failed = json.loads(lakehouse("events", "show", body["event"], "--format", "json"))
        assert (failed["state"], failed["attempts"]) == ("dead", 1)  # a synchronous call is tried once

        status, headers, body = post(f"{base}/fn/score?async=1", {"id": 9, "amount": 2})
        assert status == 202 and body["state"] == "pending"
        assert headers["location"] == f"/api/v1/events/{body['event']}"

        def looked_up():
            with urllib.request.urlopen(base + headers["location"]) as response:
                return json.loads(response.read())

        wait_for(lambda: looked_up()["state"] == "succeeded")
        assert looked_up()["result"] == {"id": 9, "score": 4}

        # A declared path, appending to a table; the same idempotency key is one event.
        first = post(f"{base}/hooks/orders", {"id": 1, "amount": 5.0}, {"idempotency-key": "order-1"})
        again = post(f"{base}/hooks/orders", {"id": 1, "amount": 5.0}, {"idempotency-key": "order-1"})
        assert first[0] == again[0] == 200 and first[2] == again[2] and "commit" in first[2]
        rows = lakehouse("query", "SELECT id, amount FROM raw.hooked", "--format", "csv")
        assert rows == "id,amount\n1,5.0\n"

        assert post(f"{base}/hooks/echo", [1, 2])[2] == {"echo": [1, 2]}

        # Each call has the function's time limit, enforced inside the worker.
        status, _, body = post(f"{base}/fn/sleepy", {})
        assert status == 500 and "ran longer than 1s" in body["error"]["message"], body

        # A worker killed mid-invocation: the event is retried after a backoff, then dead.
        status, _, body = post(f"{base}/fn/crashy?async=1", {})
        wait_for(lambda: lakehouse.json("events", "show", body["event"])["state"] == "dead")
        crashed = lakehouse.json("events", "show", body["event"])
        assert crashed["attempts"] == 2 and "killed by signal 9" in crashed["error"], crashed
        crashy_event = body["event"]
        assert crashed["updated_at_ms"] - crashed["created_at_ms"] >= 1000  # the first backoff is 1 s

        # Calls waiting together run in one process, up to batch_size of them.
        events = [post(f"{base}/fn/batched?async=1", {"n": n})[2]["event"] for n in range(40)]
        status, _, body = post(f"{base}/fn/batched", {"n": 40})  # synchronous: at once, or queued
        assert status == 200 and body["n"] == 40, body
        wait_for(lambda: all(lakehouse.json("events", "show", e)["state"] == "succeeded" for e in events))
        results = [lakehouse.json("events", "show", e)["result"] for e in events]
        assert sorted(r["n"] for r in results) == list(range(40))
        invocations = {r["invocation"] for r in results}
        assert 2 <= len(invocations) <= 10, invocations  # 40 calls, at most 20 per batch

        status, _, body = post(f"{base}/fn/nope", {})
        assert status == 404 and "basin functions ls" in body["error"]["hint"]
        status, _, body = post(f"{base}/fn/score", b"{not json")
        assert status == 400 and "not JSON" in body["error"]["message"]
        assert calls_at_once(base) >= 4  # score twice, echo, sleepy; not the keyed calls

        # Two calls of a function with one place: one runs at once, the other waits its turn
        # in the queue; both are answered.
        before = calls_at_once(base)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda n: post(f"{base}/fn/single", {"n": n}), [1, 2]))
        assert sorted((a[0], a[2]["n"]) for a in answers) == [(200, 1), (200, 2)], answers
        assert calls_at_once(base) == before + 1
    finally:
        server.kill()
        server.wait()
    # One log line per failed attempt and per dead event, naming the function and the event.
    logged = [line for line in server.stderr.read().splitlines() if crashy_event in line]
    assert any("failed, retried in 1s" in line and "crashy" in line for line in logged), logged
    assert any("dead (`basin events retry" in line and "killed by signal 9" in line for line in logged), logged

    (functions / "calls.py").write_text(CALLED.replace('"/hooks/orders"', '"/api/v1/orders"'))
    refused = lakehouse.run("deploy", str(functions), check=False)
    assert refused.returncode != 0 and "cannot be a function's path" in refused.stderr


KEPT = '''
import os
import basin

CALLS = []
TOKEN = os.urandom(8).hex()  # drawn once per process


@basin.python("3.11")
@basin.http()
def counted(event, context):
    CALLS.append(event["n"])
    return {"calls": list(CALLS), "process": TOKEN}


@basin.python("3.11", reuse=False)
@basin.http()
def counted_fresh(event, context):
    CALLS.append(event["n"])
    return {"calls": list(CALLS), "process": TOKEN}
'''


def test_http_calls_of_a_function_run_in_its_kept_process_unless_it_asks_for_a_fresh_one(lakehouse, tmp_path):
    deploy(lakehouse, tmp_path / "kept", "kept.py", KEPT)
    base, server = start_server(lakehouse, "--no-auth")
    try:
        kept = [post(f"{base}/fn/counted", {"n": n})[2] for n in range(3)]
        assert [r["calls"] for r in kept] == [[0], [0, 1], [0, 1, 2]], kept  # module globals persist
        assert len({r["process"] for r in kept}) == 1
        fresh = [post(f"{base}/fn/counted_fresh", {"n": n})[2] for n in range(3)]
        assert [r["calls"] for r in fresh] == [[0], [1], [2]], fresh  # reuse=False: nothing persists
        assert len({r["process"] for r in fresh}) == 3
        with urllib.request.urlopen(f"{base}/metrics") as response:
            metrics = response.read().decode()
        counts = {line.split("{")[1].split("}")[0]: float(line.split()[-1])
                  for line in metrics.splitlines() if line.startswith("basin_function_processes_total{")}
        assert counts['kind="kept"'] >= 2 and counts['kind="fresh"'] >= 4, counts
        assert "basin_function_keep_warm_seconds 60" in metrics
    finally:
        server.kill()
        server.wait()
