"""The event queue on a cluster (issue #16).

    python bench/event_queue.py --basin target/release/basin --queue-bench target/release/examples/queue_bench
        [--events 20000] [--calls 2000] [--latency-calls 100]

1. The queue alone: the `queue_bench` example claims and settles --events no-op invocations
   through a catalog store, two nodes (separate connection pools) with four claimers each,
   in batches of 10, each event settled on its own: the queue's own cost per invocation, no
   function process. Against Postgres (fsync on, as a real server runs) and, for comparison,
   the embedded SQLite catalog.
2. On a loopback cluster: Postgres for the catalog, moto for the S3 warehouse, one `basin
   serve --queue-only` and two `basin worker`s, as scripts/cluster.sh starts them.
   - throughput: --calls asynchronous HTTP calls (`POST /fn/noop?async=1`) of a function
     that does nothing, sent by 8 client threads; from the first call until every event
     succeeded. Each call is one event and one invocation (a fresh confined process).
   - latency: --latency-calls calls 100 ms apart, each carrying the time it was sent; the
     handler appends that and the time it started to a table, so the latency from call to
     handler comes from the table itself (p50, p95).

Postgres and moto run on the same 2 cores as Basin. Prints markdown tables.
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ingest_postgres import psql, start_postgres
import moto
from run import header, log
import serving

NOOP = '''
import time

import basin
import pyarrow as pa


@basin.python("3.11", timeout="30s")
@basin.http(max_attempts=3)
def noop(event, context):
    return None


@basin.python("3.11", timeout="30s")
@basin.http(to="bench.calls", max_attempts=3)
def stamped(event, context):
    return pa.table({"sent": [float(event["sent"])], "started": [time.time()]})
'''


def queue_alone(args, port: int, work: Path) -> None:
    psql(port, "CREATE DATABASE queue_bench")
    runs = [("Postgres 15 (fsync on)", f"postgres://postgres@127.0.0.1:{port}/queue_bench"),
            ("SQLite (embedded, synchronous = FULL)", str(work / "queue.db"))]
    print(f"| the queue alone: {args.events:,} no-op invocations, 2 nodes x 4 claimers, batches of 10 "
          "| enqueued/s | claimed and settled/s |")
    print("| --- | ---: | ---: |")
    for name, location in runs:
        out = subprocess.run([args.queue_bench, location, str(args.events), "10", "2", "4"],
                             check=True, capture_output=True, text=True)
        figures = json.loads(out.stdout)
        print(f"| {name} | {figures['enqueue_per_second']:,.0f} | {figures['invocations_per_second']:,.0f} |")
    print()


class Cluster:
    """Postgres (already running), moto, a serve node and two workers, each in its own folder."""

    def __init__(self, args, port: int, work: Path):
        self.work = work
        self.procs = []
        proc, endpoint, _ = moto.start()
        self.procs.append(proc)
        self.env = {**os.environ, "BASIN_S3_ENDPOINT": endpoint, "BASIN_S3_ACCESS_KEY_ID": "bench",
                    "BASIN_S3_SECRET_ACCESS_KEY": "bench", "BASIN_S3_REGION": "us-east-1", "RUST_LOG": "warn"}
        psql(port, "CREATE DATABASE cluster")
        catalog = f"postgres://postgres@127.0.0.1:{port}/cluster"
        serve = work / "serve"
        serve.mkdir()
        self.basin = lambda *a: subprocess.run([args.basin, "--home", str(serve), *a], check=True,
                                               capture_output=True, text=True, env=self.env)
        subprocess.run([args.basin, "init", str(serve), "--catalog", catalog, "--warehouse", "s3://lake/bench"],
                       check=True, capture_output=True, env=self.env)
        functions = work / "functions"
        functions.mkdir()
        (functions / "noop.py").write_text(NOOP)
        self.basin("deploy", str(functions))
        server = subprocess.Popen([args.basin, "--home", str(serve), "serve", "--no-auth", "--queue-only",
                                   "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True, env=self.env)
        self.procs.append(server)
        self.http_port = serving.listening(server)["http"]
        for n in (1, 2):
            home = work / f"worker{n}"
            home.mkdir()
            self.procs.append(subprocess.Popen(
                [args.basin, "--home", str(home), "worker", "--join", catalog],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**self.env, "BASIN_NODE_NAME": f"worker{n}"}))

    def call(self, conn: http.client.HTTPConnection, function: str, body: dict) -> None:
        conn.request("POST", f"/fn/{function}?async=1", body=json.dumps(body),
                     headers={"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 202, response.status

    def succeeded(self, function: str) -> int:
        listed = json.loads(self.basin("functions", "ls", "--format", "json").stdout)
        return next(f["events"]["succeeded"] for f in listed if f["name"] == function)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def throughput(args, cluster: Cluster) -> list:
    local = threading.local()

    def send(i: int) -> None:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port)
        cluster.call(local.conn, "noop", {"i": i})

    # A warm-up call: both workers' environments built and their processes up.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(send, range(4)))
    while cluster.succeeded("noop") < 4:
        time.sleep(0.2)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(args.calls)))
    sent = time.monotonic() - started
    while cluster.succeeded("noop") < args.calls + 4:
        time.sleep(0.1)
    seconds = time.monotonic() - started
    return [(f"{args.calls:,} async HTTP calls of a no-op function: calls sent [s]", f"{sent:.2f}"),
            ("... all run by the two workers [s]", f"{seconds:.2f}"),
            ("... invocations per second", f"{args.calls / seconds:,.0f}")]


def latency(args, cluster: Cluster) -> list:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port)
    for _ in range(args.latency_calls):
        cluster.call(conn, "stamped", {"sent": time.time()})
        time.sleep(0.1)
    query = "SELECT sent, started FROM bench.calls"
    for _ in range(600):
        out = subprocess.run([args.basin, "--home", str(cluster.work / "serve"), "query", query, "--format", "json"],
                             capture_output=True, text=True, env=cluster.env)
        rows = json.loads(out.stdout) if out.returncode == 0 else []
        if len(rows) >= args.latency_calls:
            break
        time.sleep(0.5)
    waits = sorted((r["started"] - r["sent"]) * 1000 for r in rows)
    return [(f"call to handler, {args.latency_calls} calls 100 ms apart, p50 [ms]", f"{statistics.median(waits):.1f}"),
            ("call to handler, p95 [ms]", f"{waits[int(len(waits) * 0.95) - 1]:.1f}")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--basin", required=True)
    p.add_argument("--queue-bench", required=True, help="the queue_bench example binary")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--calls", type=int, default=2_000)
    p.add_argument("--latency-calls", type=int, default=100)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="basin-bench-queue-"))
    os.chmod(work, 0o755)  # Postgres runs as nobody under root
    (work / "pg").mkdir()
    port, as_user, bindir = start_postgres(work / "pg", durable=True)
    cluster = None
    try:
        header(args, tpch=False)
        queue_alone(args, port, work)
        log("== starting the cluster")
        cluster = Cluster(args, port, work)
        rows = throughput(args, cluster) + latency(args, cluster)
        print("| on a loopback cluster (serve --queue-only + 2 workers, Postgres, moto) | |")
        print("| --- | ---: |")
        for name, value in rows:
            print(f"| {name} | {value} |")
    finally:
        if cluster:
            cluster.stop()
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(work / "pg" / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
