"""Distributed SQL on a loopback cluster: Postgres holds the catalog, an S3-protocol server
(moto) the warehouse, `basin serve` runs the Ballista scheduler and two `basin worker`s join it
with executors. Every node is its own process with its own folder.

What it must show: a query sent to the cluster runs on the executors (EXPLAIN says so and shows
the stages; both executors report tasks) and answers what the data holds; the same query from
the CLI of a node goes through the scheduler too; the same cluster works on a warehouse folder
every node mounts (here: one machine's disk), and a node that does not see the folder's mark is
refused before it joins; and a worker killed while queries run never
yields a wrong answer: each query answers right (Ballista ran the lost tasks again) or ends with
an error that says why. Some such queries used to hang for up to two minutes; `[sql]
query_timeout` bounds them (20 s here), and then the error is the time limit's."""

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from conftest import BASIN, Basin, start_server, wait_for
from test_cluster import node, s3_client
from test_ingest_postgres import PASSWORD, db, free_port, postgres  # noqa: F401 (fixtures)
from test_s3 import s3_endpoint  # noqa: F401 (fixture)

ROWS = 200_000


def cluster_toml(scheduler_port: int, engine: str = "ballista", s3_reads: int = 32) -> str:
    # A lost executor is noticed after 3 s (30 s by default).
    return (f'\n[sql]\nengine = "{engine}"\nquery_timeout = "20s"\ns3_reads = {s3_reads}\n\n'
            f'[sql.ballista]\nscheduler = "127.0.0.1:{scheduler_port}"\nexecutor_timeout = "3s"\n')


def post_query(base: str, sql: str, timeout: float = 120):
    request = urllib.request.Request(base + "/api/v1/query", data=json.dumps({"sql": sql}).encode(),
                                     headers={"Content-Type": "application/json",
                                              # Each ask runs: these tests are about where it runs.
                                              "Cache-Control": "no-cache"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def start_worker(b, catalog, log):
    return subprocess.Popen([BASIN, "--home", str(b.home), "worker", "--join", catalog,
                             "--listen", "127.0.0.1:0", "--no-auth"],
                            stdout=subprocess.DEVNULL, stderr=log, env={**b.env, "BASIN_NODE_NAME": b.home.name})


def executor_ready(log_path) -> bool:
    return "SQL executor on" in log_path.read_text()


def executor_tasks(log_path) -> float:
    """`basin_sql_executor_tasks_total` of the worker whose log this is."""
    return metric(log_path, "basin_sql_executor_tasks_total")


def metric(log_path, name: str) -> float:
    """The metric `name` of the worker whose log this is."""
    url = re.search(r"/metrics on (http://[0-9.:]+)", log_path.read_text()).group(1)
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def test_a_query_runs_on_the_workers_executors_and_answers_as_the_data_says(tmp_path, db, s3_endpoint):
    pg, dbname, _ = db
    catalog = pg.url(dbname)
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket="lake")
    s3.create_bucket(Bucket="drop")
    port = free_port()
    server = node(tmp_path, "serve", s3_endpoint, cluster_toml(port))
    server("init", str(server.home), "--catalog", catalog, "--warehouse", "s3://lake/warehouse")
    data = tmp_path / "orders.csv"
    with open(data, "w") as f:
        f.write("id,customer,amount\n")
        for i in range(ROWS):
            f.write(f"{i},{i % 97},{i % 1000}\n")
    server("import", str(data), "--table", "shop.orders")
    expected = {c: sum(i % 1000 for i in range(ROWS) if i % 97 == c) for c in range(97)}

    base, serve = start_server(server, "--no-auth", "--queue-only")
    # One S3 request at a time on the workers (`[sql] s3_reads`): a scan that took a second
    # slot while holding one would hang here.
    workers = [node(tmp_path, f"worker{n}", s3_endpoint, cluster_toml(port, s3_reads=1)) for n in (1, 2)]
    logs = [tmp_path / f"worker{n}.log" for n in (1, 2)]
    procs = [start_worker(w, catalog, open(log, "w")) for w, log in zip(workers, logs)]
    try:
        wait_for(lambda: all(executor_ready(log) for log in logs), seconds=120)
        sql = "SELECT customer, sum(amount) AS total, count(*) AS n FROM shop.orders GROUP BY customer"
        # Executors poll the scheduler: until both have, a query may still run here.
        wait_for(lambda: "ballista" in explain_engine(base, sql), seconds=60)
        rows = query_once_more_on_error(base, "EXPLAIN " + sql)["rows"]
        stages = [r for r in rows if r["plan_type"].startswith("distributed_plan stage")]
        assert len(stages) >= 2, rows
        assert any("ShuffleWriterExec" in r["plan"] for r in stages), stages

        def answered_on_both():
            answer = query_once_more_on_error(base, sql)["rows"]
            assert {r["customer"]: int(r["total"]) for r in answer} == expected
            assert sum(r["n"] for r in answer) == ROWS
            # Both executors ran tasks (each scans some of the files, or merges). Executors
            # pull tasks when they poll: one may take all of a query's, so the query may run
            # again until both have run some.
            tasks = [executor_tasks(log) for log in logs]
            print("tasks per executor:", tasks)
            return all(t > 0 for t in tasks)
        wait_for(answered_on_both, seconds=60)
        for log in logs:
            assert metric(log, "basin_sql_s3_reads") == 1
            assert metric(log, "basin_sql_s3_reads_in_flight") == 0, "every slot given back"
        print("S3 reads that waited for a slot:", [metric(log, "basin_sql_s3_reads_waited_total") for log in logs])

        # The CLI of a node sends its query through the same scheduler.
        out = server("query", f"EXPLAIN {sql}", "--format", "json")
        assert any(r["plan_type"] == "engine" and r["plan"].startswith("ballista") for r in json.loads(out)), out
        cli = json.loads(server("query", sql + " ORDER BY customer", "--format", "json"))
        assert {r["customer"]: int(r["total"]) for r in cli} == expected

        # A worker killed while queries run: every answer that comes back is right; a query
        # that cannot finish ends with an error and a hint (before the answer starts: an HTTP
        # error; after: an `error` member ending the JSON answer), never a wrong answer.
        def outcome():
            try:
                body = post_query(base, sql, timeout=90)
            except urllib.error.HTTPError as e:
                body = json.loads(e.read().decode())
            if "error" in body:
                error = body["error"]
                assert error["message"] and error["hint"], error
                return "error: " + error["message"]
            return {r["customer"]: int(r["total"]) for r in body["rows"]} == expected

        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(outcome) for _ in range(4)]
            time.sleep(0.3)
            procs[0].send_signal(signal.SIGKILL)
            outcomes = [r.result(timeout=120) for r in running]
        print("outcomes with a worker killed:", outcomes)
        assert False not in outcomes, outcomes
        # The surviving worker's executor answers once the scheduler has let the lost one go.
        wait_for(lambda: answers_right(base, sql, expected), seconds=120)

    finally:
        for proc in procs:
            proc.kill()
        serve.kill()
        serve.wait()
        log = serve.stderr.read()
        print(f"the server logged {len(log)} bytes; the last of them:\n{log[-3000:]}")


def query_once_more_on_error(base: str, sql: str):
    """`post_query`, tried a second time after an HTTP error. One run in about twenty here
    got a 400 on the first distributed queries right after the executors joined (not yet
    understood); the error is printed, and a second error fails the test."""
    try:
        return post_query(base, sql)
    except urllib.error.HTTPError as e:
        print("first try failed:", e.code, e.read().decode()[:2000])
        return post_query(base, sql)


def explain_engine(base: str, sql: str) -> str:
    rows = post_query(base, "EXPLAIN " + sql)["rows"]
    return next((r["plan"] for r in rows if r["plan_type"] == "engine"), "")


def answers_right(base, sql, expected) -> bool:
    try:
        body = post_query(base, sql, timeout=90)
    except urllib.error.HTTPError:
        return False
    return "error" not in body and {r["customer"]: int(r["total"]) for r in body["rows"]} == expected


def test_a_cluster_shares_a_warehouse_folder_its_nodes_all_mount(tmp_path, db):
    """No bucket: the warehouse is a folder every node sees at the same path (NFS or EFS
    between machines; here, one machine's disk). A node that does not see the first node's
    mark in it (the shared folder not mounted there) is refused, and keeps no half-made
    lakehouse; once it sees the folder, it joins, and its executor runs queries."""
    pg, dbname, _ = db
    catalog = pg.url(dbname)
    port = free_port()

    def folder_node(name):
        home = tmp_path / name
        home.mkdir()
        (home / "basin.toml").write_text(cluster_toml(port))
        return Basin(home, {"PGPASSWORD": PASSWORD})

    shared = tmp_path / "mnt" / "lake"
    server = folder_node("serve")
    server("init", str(server.home), "--catalog", catalog, "--warehouse", f"file://{shared}")
    assert (shared / ".basin-lakehouse").is_file()
    data = tmp_path / "orders.csv"
    rows = 20_000
    data.write_text("id,customer,amount\n" + "".join(f"{i},{i % 7},{i % 100}\n" for i in range(rows)))
    server("import", str(data), "--table", "shop.orders")
    assert list(shared.rglob("*.parquet")), "the data lies in the shared folder"
    expected = {c: sum(i % 100 for i in range(rows) if i % 7 == c) for c in range(7)}

    # The shared folder "not mounted" on the next node: it is refused by name, with a hint.
    worker = folder_node("worker")
    aside = tmp_path / "mnt" / "lake.aside"
    shared.rename(aside)
    refused = worker.run("worker", "--join", catalog, check=False)
    assert refused.returncode != 0
    assert f"the warehouse folder {shared} does not hold this lakehouse's data" in refused.stderr, refused.stderr
    assert "hint: every node" in refused.stderr and f"at {shared} on this node" in refused.stderr
    assert not (worker.home / ".basin").exists(), "a refused node keeps no half-made lakehouse"
    # Another lakehouse's folder at that path is refused too.
    shared.mkdir()
    (shared / ".basin-lakehouse").write_text("someone-else")
    refused = worker.run("worker", "--join", catalog, check=False)
    assert "holds another lakehouse's data" in refused.stderr, refused.stderr
    (shared / ".basin-lakehouse").unlink()
    shared.rmdir()
    aside.rename(shared)

    base, serve = start_server(server, "--no-auth", "--queue-only")
    log = tmp_path / "worker.log"
    proc = start_worker(worker, catalog, open(log, "w"))
    try:
        wait_for(lambda: executor_ready(log), seconds=120)
        sql = "SELECT customer, sum(amount) AS total, count(*) AS n FROM shop.orders GROUP BY customer"
        wait_for(lambda: "ballista" in explain_engine(base, sql), seconds=60)

        def answered_by_the_executor():
            body = query_once_more_on_error(base, sql)
            assert {r["customer"]: int(r["total"]) for r in body["rows"]} == expected
            return executor_tasks(log) > 0
        wait_for(answered_by_the_executor, seconds=60)
        # The worker's own CLI reads the same tables from the same folder.
        mine = json.loads(worker("query", "SELECT count(*) AS n FROM shop.orders", "--format", "json"))
        assert mine == [{"n": rows}]
    finally:
        proc.kill()
        serve.kill()
        serve.wait()
