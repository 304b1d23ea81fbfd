"""A Basin cluster on loopback (issue #16): a real Postgres holds the catalog and the event
queue, an S3-protocol server (moto) holds the warehouse and the landing bucket, and three
nodes share them: one `basin serve --queue-only` that lists the bucket and queues events, and
two `basin worker`s that claim and run them. Every node is a separate process with its own
folder, as on separate hosts.

What it must show: files landed in the bucket are each loaded exactly once, by both workers,
even when one worker is killed with SIGKILL in the middle; and a pipeline run against the
cluster's catalog runs its models on the workers (or, with none, where it was started) and gives
the same tables as on an embedded lakehouse.
"""

import hashlib
import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3

from conftest import BASIN, Basin, start_server, wait_for
from test_ingest_postgres import PASSWORD, db, postgres  # noqa: F401 (fixtures)
from test_s3 import KEYS, s3_endpoint  # noqa: F401 (fixture)

LOADER = '''
import basin


@basin.python("3.11", timeout="30s")
@basin.on_object(bucket="incoming", suffix=".csv", to="raw.landed", batch_size=100)
def load(event, context):
    return context.read_table()
'''


def s3_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def node(tmp_path, name, s3_endpoint, extra=""):
    """A node's folder with its basin.toml (the bucket's endpoint, the landing bucket, a short
    event lease), not yet a lakehouse; the catalog's password in PGPASSWORD."""
    home = tmp_path / name
    home.mkdir()
    (home / "basin.toml").write_text(
        f'[s3]\nendpoint = "{s3_endpoint}"\npath_style = true\n\n'
        '[buckets.incoming]\nurl = "s3://drop/incoming/"\npoll_seconds = 0.5\n\n'
        f'[functions]\nevent_lease = "3s"\n{extra}')
    return Basin(home, {**KEYS, "PGPASSWORD": PASSWORD})


def start_worker(b: Basin, catalog: str, log, *extra):
    # No --warehouse: a node joining finds the lakehouse's in the catalog.
    return subprocess.Popen([BASIN, "--home", str(b.home), "worker", "--join", catalog, *extra],
                            stdout=subprocess.DEVNULL, stderr=log,
                            env={**b.env, "BASIN_NODE_NAME": b.home.name})


def ran_and_holds_a_lease(b: Basin, node_name: str) -> bool:
    """Whether `node_name` has settled some events and runs others now (claimed, not settled)."""
    events = b.json("events", "ls", "--function", "load", "--limit", "5000")
    mine = {e["state"] for e in events if e["node"] == node_name}
    return {"succeeded", "running"} <= mine


def landed(b: Basin):
    out = b.run("query", "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM raw.landed",
                "--format", "json", check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else {"n": 0, "ids": 0}


def test_two_workers_load_2000_files_exactly_once_even_when_one_is_killed(tmp_path, db, s3_endpoint):
    pg, dbname, _ = db
    catalog = pg.url(dbname)
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket="lake")
    s3.create_bucket(Bucket="drop")

    server = node(tmp_path, "serve", s3_endpoint)
    server("init", str(server.home), "--catalog", catalog, "--warehouse", "s3://lake/warehouse")
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "loader.py").write_text(LOADER)
    server("deploy", str(functions))
    # A node that names another warehouse is refused: every node must read the same files.
    stray = node(tmp_path, "stray", s3_endpoint)
    refused = stray.run("init", str(stray.home), "--catalog", catalog, "--warehouse", "s3://lake/other",
                        check=False)
    assert refused.returncode != 0
    assert "keeps its data in s3://lake/warehouse" in refused.stderr and "hint:" in refused.stderr
    _, serve = start_server(server, "--no-auth", "--queue-only")
    workers = [node(tmp_path, f"worker{n}", s3_endpoint) for n in (1, 2)]
    logs = [open(tmp_path / f"worker{n}.log", "w") for n in (1, 2)]
    procs = []
    try:
        # The files land before any worker runs, so both find a full queue (20 batches of 100):
        # had they landed while the workers ran, the queue could drain as fast as it fills.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: s3.put_object(Bucket="drop", Key=f"incoming/{i:04}.csv",
                                                  Body=f"id\n{i}\n".encode()), range(2000)))
        wait_for(lambda: len(server.json("events", "ls", "--function", "load", "--limit", "5000")) == 2000,
                 seconds=120)
        # The second also answers /healthz and /metrics.
        procs = [start_worker(w, catalog, log, *extra) for w, log, extra
                 in zip(workers, logs, [(), ("--listen", "127.0.0.1:0")])]
        # Midway: the first worker dies without a word, after it ran some events, while it
        # holds leases on others.
        wait_for(lambda: ran_and_holds_a_lease(server, "worker1"), seconds=240)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        print("killed worker1 with", landed(server)["n"], "rows landed")
        wait_for(lambda: landed(server)["n"] >= 2000, seconds=300)
        time.sleep(4)  # past a lease: a late duplicate would have landed by now
        assert landed(server) == {"n": 2000, "ids": 2000}
        metrics = worker_metrics(server, tmp_path / "worker2.log")
    finally:
        serve.kill()
        for proc in procs:
            proc.kill()
            proc.wait()
        for log in logs:
            log.close()
    events = server.json("events", "ls", "--function", "load", "--limit", "5000")
    assert len(events) == 2000
    assert len({e["id"] for e in events}) == 2000
    assert {e["state"] for e in events} == {"succeeded"}
    # Both workers ran some: each event records the node that ran it last.
    nodes = {e["node"] for e in events}
    assert len(nodes) == 2, nodes
    # The killed worker's leased events ran again elsewhere: attempts > 1 on some.
    assert any(e["attempts"] > 1 for e in events), "no event was taken over from the killed worker"
    # Worker 2's own count of the events it settled is the catalog's.
    ran_by_2 = sum(e["node"] == "worker2" for e in events)
    assert metrics["basin_events_succeeded_total"] == ran_by_2, (metrics, ran_by_2)
    assert metrics["basin_events_claimed_total"] >= ran_by_2
    assert metrics["basin_events_failed_total"] == 0
    assert metrics["basin_event_lease_seconds"] == 3


def worker_metrics(server: Basin, log_path) -> dict:
    """A worker's /healthz and /metrics, at the address its log names: /metrics needs a
    reader token from the shared catalog. Returns the basin_event* samples."""
    found = re.search(r"/metrics on (http://\S+) ", log_path.read_text())
    assert found, log_path.read_text()
    url = found.group(1)
    assert urllib.request.urlopen(url + "/healthz", timeout=10).read() == b"ok\n"
    try:
        urllib.request.urlopen(url + "/metrics", timeout=10)
        raise AssertionError("/metrics answered without a token")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    token = server("token", "create", "--role", "reader").strip()
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(request, timeout=10).read().decode()
    return {name: float(value) for name, value in re.findall(r"^(basin_event\w*) (\S+)$", text, re.M)}


def table_digests(b: Basin):
    """A digest of every table on main: its rows as CSV, sorted."""
    tables = [t["table"] for t in b.json("table", "ls")]
    digests = {}
    for table in tables:
        rows = b("query", f"SELECT * FROM {table}", "--format", "csv").splitlines()
        digests[table] = hashlib.sha256("\n".join([rows[0], *sorted(rows[1:])]).encode()).hexdigest()
    return digests


def test_a_pipeline_on_the_cluster_runs_its_models_on_the_workers_and_gives_the_tables_of_an_embedded_lakehouse(
        tmp_path, db, s3_endpoint):
    pg, dbname, _ = db
    catalog = pg.url(dbname)
    s3_client(s3_endpoint).create_bucket(Bucket="lake")
    s3_client(s3_endpoint).create_bucket(Bucket="drop")  # the workers' landing bucket, unused here
    # The project brings its own basin.toml: the endpoint comes from the environment here.
    cluster = Basin(tmp_path / "cluster", {**KEYS, "PGPASSWORD": PASSWORD, "BASIN_S3_ENDPOINT": s3_endpoint,
                                          "BASIN_NODE_NAME": "starter"})
    cluster.home.mkdir()
    cluster("init", str(cluster.home), "--catalog", catalog, "--warehouse", "s3://lake/warehouse", "--project")
    embedded = Basin(tmp_path / "embedded")
    embedded.home.mkdir()
    subprocess.run([BASIN, "init", str(embedded.home), "--project"], check=True, capture_output=True)
    embedded("run")
    theirs = table_digests(embedded)

    # No worker yet: each model waits `model_worker_wait` for one, then runs where `basin run` runs.
    alone = cluster.json("run")
    assert alone["status"] == "succeeded", alone
    models = [m for m in alone["models"] if m["kind"] != "expectation"]
    assert len(models) == 2 and {m["node"] for m in models} == {"starter"}, models
    assert table_digests(cluster) == theirs

    # Two workers join: every model of the next run goes to one of them (they get the upstream
    # model's output through the warehouse), and the tables come out the same.
    settings = cluster.home / "basin.toml"
    settings.write_text(settings.read_text() + '\n[functions]\nmodel_worker_wait = "60s"\n')
    workers = [node(tmp_path, f"worker{n}", s3_endpoint) for n in (1, 2)]
    logs = [open(tmp_path / f"worker{n}.log", "w") for n in (1, 2)]
    procs = [start_worker(w, catalog, log) for w, log in zip(workers, logs)]
    try:
        dispatched = cluster.json("run", "--no-cache")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    assert dispatched["status"] == "succeeded", dispatched
    models = [m for m in dispatched["models"] if m["kind"] != "expectation"]
    assert {m["node"] for m in models} <= {"worker1", "worker2"}, models
    assert all(m["rows"] > 0 for m in models), models
    assert table_digests(cluster) == theirs
    # The models' outputs in the warehouse went with the run.
    listed = s3_client(s3_endpoint).list_objects_v2(Bucket="lake", Prefix="warehouse/_runs/")
    assert listed.get("KeyCount", 0) == 0, listed


SLOW_MODEL = '''
import time

import basin
import pyarrow.compute as pc


@basin.python("3.11", timeout="2m")
@basin.model()
def doubled(raw=basin.Model("raw")):
    time.sleep(8)
    return raw.append_column("twice", pc.multiply(raw["n"], 2))
'''


def test_a_model_whose_worker_is_killed_runs_again_elsewhere_and_the_run_merges_once(tmp_path, db, s3_endpoint):
    pg, dbname, _ = db
    catalog = pg.url(dbname)
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket="lake")
    s3.create_bucket(Bucket="drop")
    starter = Basin(tmp_path / "starter", {**KEYS, "PGPASSWORD": PASSWORD, "BASIN_S3_ENDPOINT": s3_endpoint,
                                          "BASIN_NODE_NAME": "starter"})
    starter.home.mkdir()
    starter("init", str(starter.home), "--catalog", catalog, "--warehouse", "s3://lake/warehouse")
    (starter.home / "basin.toml").write_text(
        '[project]\nname = "slow"\nnamespace = "slow"\npython = "3.11"\n\n'
        '[functions]\nevent_lease = "3s"\nmodel_worker_wait = "60s"\n')
    (starter.home / "doubled.py").write_text(SLOW_MODEL)
    (tmp_path / "raw.csv").write_text("n\n" + "".join(f"{i}\n" for i in range(1000)))
    starter("import", str(tmp_path / "raw.csv"), "--table", "slow.raw")

    worker = node(tmp_path, "worker1", s3_endpoint)
    log = open(tmp_path / "worker1.log", "w")
    proc = start_worker(worker, catalog, log)
    run = subprocess.Popen([BASIN, "--home", str(starter.home), "run", "--format", "json"], cwd=starter.home,
                           env=starter.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def model_on_the_worker():
            events = starter.json("events", "ls", "--state", "running")
            return any(e["function"].startswith("run/") and e["node"] == "worker1" for e in events)
        wait_for(model_on_the_worker, seconds=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # Its lease runs out after 3 s; with no other worker, the starting node runs the model.
        out, err = run.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    record = json.loads(out)
    assert record["status"] == "succeeded", record
    [model] = record["models"]
    assert model["node"] == "starter" and model["rows"] == 1000, model
    events = starter.json("events", "ls", "--function", f"run/{record['id']}")
    assert [(e["state"], e["attempts"]) for e in events] == [("succeeded", 2)], events
    answer = starter.json("query", "SELECT count(*) AS n, sum(twice) AS s FROM slow.doubled")
    assert answer == [{"n": 1000, "s": 2 * sum(range(1000))}], answer
