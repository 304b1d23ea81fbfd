"""Triggered functions end to end: `basin deploy --plan` and `deploy`, CSV files landing in a
bucket folder while `basin serve` runs, a SIGKILL in the middle, a restart, and the target
table holding every file's rows exactly once; a malformed file ends dead-lettered."""

import json
import os
import signal
import time

from conftest import start_server, wait_for

FUNCTION = '''
import basin

@basin.python("3.11", timeout="5s")
@basin.on_object(bucket="landing", prefix="orders/", suffix=".csv", to="raw.orders", batch_size=25)
def load(event, context):
    print("loading", event["key"], event["size"])
    return context.read_table()
'''

FILES = 300


def land(folder, i):
    """Writes a file the way uploaders do: under a hidden name, then renamed into place."""
    partial = folder / f".orders-{i:04}.csv.part"
    partial.write_text(f"id,amount\n{2 * i},1.50\n{2 * i + 1},2.25\n")
    os.rename(partial, folder / f"orders-{i:04}.csv")


def states(lakehouse):
    events = json.loads(lakehouse("events", "ls", "-n", "10000", "--format", "json"))
    counts = {}
    for e in events:
        counts[e["state"]] = counts.get(e["state"], 0) + 1
    return counts


def deploy_load(lakehouse, tmp_path):
    """Deploys FUNCTION; returns the folder whose files it loads."""
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "load.py").write_text(FUNCTION)
    lakehouse("deploy", str(functions))
    orders = lakehouse.home / ".basin" / "buckets" / "landing" / "orders"
    orders.mkdir(parents=True)
    return orders


def test_landed_files_are_appended_exactly_once_across_a_sigkill(lakehouse, tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "load.py").write_text(FUNCTION)
    plan = lakehouse("deploy", str(functions), "--plan")
    assert "+ load" in plan and "add" in plan and "raw.orders" in plan
    assert json.loads(lakehouse("functions", "ls", "--format", "json")) == []
    lakehouse("deploy", str(functions))
    assert "same" in lakehouse("deploy", str(functions), "--plan")

    landing = lakehouse.home / ".basin" / "buckets" / "landing" / "orders"
    landing.mkdir(parents=True)
    base, server = start_server(lakehouse, "--no-auth")
    for i in range(FILES // 2):
        land(landing, i)
    (landing / "broken.csv").write_text("id,amount\n1,2,3\n")
    # Kill it while it works: some batches are committed, others are not.
    wait_for(lambda: states(lakehouse).get("succeeded", 0) >= 25, 180)
    server.send_signal(signal.SIGKILL)
    server.wait()
    for i in range(FILES // 2, FILES):  # these land while Basin is down
        land(landing, i)

    base, server = start_server(lakehouse, "--no-auth")
    try:
        wait_for(lambda: states(lakehouse) == {"succeeded": FILES, "dead": 1}, 180, show=lambda: lakehouse("events", "ls"))
    finally:
        server.kill()
        server.wait()

    rows = lakehouse("query", "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM raw.orders", "--format", "csv")
    assert rows == f"n,ids\n{2 * FILES},{2 * FILES}\n"
    dead = json.loads(lakehouse("events", "ls", "--state", "dead", "--format", "json"))
    assert [e["payload"]["key"] for e in dead] == ["orders/broken.csv"]
    shown = lakehouse("events", "show", dead[0]["id"][:8])
    # Read as `basin import` reads it, with its message.
    assert "orders/broken.csv:2: wrong number of fields (expected 2 got 3)" in shown, shown
    assert "attempts  3 of 3" in shown
    assert "loading orders/broken.csv" in shown  # the handler's output, kept with the event
    # Every stored event names the commit that appended it.
    succeeded = json.loads(lakehouse("events", "ls", "--state", "succeeded", "-n", "1000", "--format", "json"))
    assert all(e["commit"] for e in succeeded)
    assert lakehouse.run("events", "retry", dead[0]["id"]).stderr.startswith("Queued 1 event again")
    assert states(lakehouse)["pending"] == 1


def test_files_still_being_written_when_found_are_queued_once(lakehouse, tmp_path):
    """A file found open for writing, by the start-up scan or in a folder just made, is
    queued once, when it is closed: not also at the size it was found at."""
    orders = deploy_load(lakehouse, tmp_path)

    def upload(path, rows, found):
        """Writes the first of `rows`, calls `found` (which finds the file open), then the rest."""
        with open(path, "w") as file:
            file.write("id,amount\n" + rows[0])
            file.flush()
            found()
            time.sleep(1)
            file.write("".join(rows[1:]))

    server = None
    def start():
        nonlocal server
        _, server = start_server(lakehouse, "--no-auth")
    try:
        upload(orders / "slow.csv", ["1,1.50\n", "2,2.25\n"], start)  # the scan finds it
        (orders / "day").mkdir()  # the watcher reads the folder when it sees it
        upload(orders / "day" / "slow.csv", ["3,1.50\n", "4,2.25\n"], lambda: None)
        wait_for(lambda: states(lakehouse) == {"succeeded": 2}, 60, show=lambda: lakehouse("events", "ls"))
        time.sleep(2 * 2 + 1)  # the later looks at both files
        events = json.loads(lakehouse("events", "ls", "--format", "json"))
    finally:
        if server:
            server.kill()
            server.wait()
    found = sorted((e["payload"]["key"], e["payload"]["size"]) for e in events)
    assert found == [("orders/day/slow.csv", 24), ("orders/slow.csv", 24)], events
    rows = lakehouse("query", "SELECT id FROM raw.orders ORDER BY id", "--format", "csv")
    assert rows == "id\n1\n2\n3\n4\n"


def test_files_of_folders_made_or_moved_into_a_bucket_while_serving_are_all_handled(lakehouse, tmp_path):
    orders = deploy_load(lakehouse, tmp_path)
    base, server = start_server(lakehouse, "--no-auth")
    def rows():
        out = lakehouse.run("query", "SELECT count(*) AS n FROM raw.orders", "--format", "csv", check=False)
        return int(out.stdout.splitlines()[1]) if out.returncode == 0 else 0

    try:
        # One file first, so that the server's scan at start-up is over: it would find the
        # files below however they came.
        land(orders, 999)
        wait_for(lambda: rows() == 2, 120)
        # A folder filled elsewhere and moved in: its files arrive with it, in one rename.
        outside = tmp_path / "batch"
        outside.mkdir()
        for i in range(10):
            land(outside, i)
        os.rename(outside, orders / "batch")
        # New folders, each written into at once: before the watcher has seen the folder.
        for n in range(20):
            folder = orders / f"day{n:02}"
            folder.mkdir()
            land(folder, 100 + n)
        try:
            wait_for(lambda: rows() == 2 * (1 + 10 + 20), 60)
        except AssertionError as e:
            raise AssertionError(f"{e}: {rows()} rows; events {states(lakehouse)}") from None
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)



WINDOWED = '''
import basin

@basin.python("3.11", timeout="5s")
@basin.on_object(bucket="outside", suffix=".csv", to="raw.windowed", batch_size=10, batch_window="3s")
def windowed(event, context):
    print("reading", event["key"])
    return context.read_table()
'''


def test_a_batch_window_gathers_events_from_a_folder_of_ones_choosing(lakehouse, tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "windowed.py").write_text(WINDOWED)
    (lakehouse.home / "basin.toml").write_text('[buckets.outside]\npath = "../outside"\n')
    lakehouse("deploy", str(functions))
    landing = tmp_path / "outside"  # relative to basin.toml's folder
    assert landing.is_dir()
    _, server = start_server(lakehouse, "--no-auth")
    try:
        for i in range(3):  # 0.5 s apart: without the window, each would be its own batch
            land(landing, i)
            time.sleep(0.5)
        wait_for(lambda: states(lakehouse) == {"succeeded": 3}, 60, show=lambda: lakehouse("events", "ls"))
    finally:
        server.kill()
        server.wait()
    events = json.loads(lakehouse("events", "ls", "--format", "json"))
    assert len({e["commit"] for e in events}) == 1, events  # one batch, one commit
    assert sorted(e["payload"]["key"] for e in events) == [f"orders-{i:04}.csv" for i in range(3)]
    assert lakehouse("query", "SELECT count(*) AS n FROM raw.windowed", "--format", "csv") == "n\n6\n"

    # Retention: the succeeded events keep a slim row, which is what stops the folder's scan at
    # the next start from delivering the files again.
    (lakehouse.home / "basin.toml").write_text('[buckets.outside]\npath = "../outside"\n'
                                               '[maintenance]\nkeep_events = "1ms"\n')
    time.sleep(0.01)
    report = json.loads(lakehouse("gc", "--format", "json"))
    assert (report["events_removed"], report["events_slimmed"]) == (0, 3), report
    slim = json.loads(lakehouse("events", "ls", "--format", "json"))
    assert [(e["state"], e["logs"], e["result"]) for e in slim] == [("succeeded", "", None)] * 3
    _, server = start_server(lakehouse, "--no-auth")
    try:
        land(landing, 3)
        wait_for(lambda: states(lakehouse) == {"succeeded": 4}, 60, show=lambda: lakehouse("events", "ls"))
    finally:
        server.kill()
        server.wait()
    assert lakehouse("query", "SELECT count(*) AS n FROM raw.windowed", "--format", "csv") == "n\n8\n"


TYPED = '''
import basin

@basin.python("3.11", timeout="10s")
@basin.on_object(bucket="typed", suffix=".csv", to="raw.money")
def money(event, context):
    table = context.read_table()
    print("types", event["key"], [str(t) for t in table.schema.types])
    return table
'''


def test_a_function_reads_an_object_with_the_types_an_import_infers(lakehouse, tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "money.py").write_text(TYPED)
    lakehouse("deploy", str(functions))
    landing = lakehouse.home / ".basin" / "buckets" / "typed"  # made by deploy
    first = "id,amount,ratio,day\n1,10.50,1e3,2024-01-31\n"
    # Integer-valued money and ratios, appended to the decimal and double columns exactly.
    second = "id,amount,ratio,day\n2,3,4,2024-02-01\n"
    (tmp_path / "first.csv").write_text(first)
    lakehouse("import", str(tmp_path / "first.csv"), "--table", "raw.imported")
    _, server = start_server(lakehouse, "--no-auth")
    try:
        (landing / "first.csv").write_text(first)
        wait_for(lambda: states(lakehouse) == {"succeeded": 1}, 60, show=lambda: lakehouse("events", "ls"))
        (landing / "second.csv").write_text(second)
        wait_for(lambda: states(lakehouse) == {"succeeded": 2}, 60, show=lambda: lakehouse("events", "ls"))
    finally:
        server.kill()
        server.wait()
    def types(table):
        return [c["type"] for c in lakehouse.json("table", "show", table)["columns"]]
    assert types("raw.money") == types("raw.imported") == ["long", "decimal(18, 2)", "double", "date"]
    rows = lakehouse.json("query", "SELECT id, amount, ratio, day FROM raw.money ORDER BY id")
    assert rows == [{"id": 1, "amount": "10.50", "ratio": 1000.0, "day": "2024-01-31"},
                    {"id": 2, "amount": "3.00", "ratio": 4.0, "day": "2024-02-01"}]
    events = json.loads(lakehouse("events", "ls", "--format", "json"))
    logs = lakehouse("events", "show", [e for e in events if e["payload"]["key"] == "first.csv"][0]["id"][:8])
    assert "types first.csv ['int64', 'decimal128(18, 2)', 'double', 'date32[day]']" in logs, logs
