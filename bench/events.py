"""Triggered functions under load, on one `basin serve` (issue #6):

- a burst: N small CSV files (one row each) dropped into a watched bucket at once, and the
  time from the first file landing until the target table holds all N rows (the count is
  checked exactly);
- a no-op burst (issue #53): N files dropped into a bucket whose function returns at once
  (no table read, no `to=`), and the time until the server settled all N events as
  succeeded (its `basin_events_succeeded_total`): what dispatch itself costs per event;
- latency at low load: files landing one at a time, 100 ms apart, from the moment each is
  renamed into the bucket to the first line of its handler (p50, p99);
- idle: the CPU time the server uses over 60 s with nothing to do, once its workers have
  passed their keep-alive, and how many workers are left.

The function appends each file's rows with the time its handler started, so the latency
comes from the table itself.
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import serving

FUNCTION = '''
import time

import basin
import pyarrow as pa


@basin.python("3.11", timeout="30s")
@basin.on_object(bucket="landing", suffix=".csv", to="bench.{table}", batch_size={batch})
def {table}(event, context):
    started = time.time()
    table = context.read_table()
    return table.append_column("started", pa.array([started] * table.num_rows, pa.float64()))
'''

NOOP = '''
import basin


@basin.python("3.11")
@basin.on_object(bucket="quiet", batch_size={batch})
def noop(event, context):
    return None
'''

KEEP_ALIVE_SECONDS = 5
IDLE_SECONDS = 60


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def land(folder: Path, name: str, row: int) -> None:
    """Writes a file the way uploaders do: under a hidden name, then renamed into place."""
    partial = folder / f".{name}.part"
    partial.write_text(f"id,landed\n{row},{time.time():.6f}\n")
    os.rename(partial, folder / name)


class Server:
    def __init__(self, basin: str, home: Path):
        env = {"RUST_LOG": "warn", "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
               "BASIN_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE_SECONDS)}
        self.proc = subprocess.Popen([basin, "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--no-auth"],
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.http = http.client.HTTPConnection("127.0.0.1", serving.listening(self.proc)["http"])

    def request(self, method: str, path: str, body: str | None = None):
        for attempt in (1, 2):
            try:
                self.http.request(method, path, body=body, headers={"content-type": "application/json"})
                response = self.http.getresponse()
                return response.status, response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # The server closes connections idle past its keep-alive: connect again.
                self.http.close()
                if attempt == 2:
                    raise

    def query(self, sql: str):
        status, body = self.request("POST", "/api/v1/query", json.dumps({"sql": sql}))
        return json.loads(body)["rows"] if status == 200 else None

    def succeeded(self) -> float:
        """The server's `basin_events_succeeded_total`."""
        for line in self.request("GET", "/metrics")[1].decode().splitlines():
            if line.startswith("basin_events_succeeded_total "):
                return float(line.split()[-1])
        return 0.0

    def count(self, table: str) -> int:
        rows = self.query(f"SELECT count(*) AS n FROM bench.{table}")
        return rows[0]["n"] if rows else 0

    def thread_cpu(self) -> dict:
        """Each live thread of the server: the nanoseconds it has run (schedstat). The
        process's own user + system time counts in clock ticks (10 ms), too coarse for an
        idle server."""
        ran = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                ran[task.name] = int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass  # the thread ended
        return ran

    @staticmethod
    def cpu_between(before: dict, after: dict) -> float:
        """Seconds the server's threads ran between two `thread_cpu` readings (a thread that
        ended in between is missed)."""
        return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9

    def workers(self) -> int:
        """Processes the server started that are still alive (warm workers and their children)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return len(out.stdout.split())

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def deploy(basin: str, home: Path, work: Path, table: str, batch: int) -> Path:
    """Deploys the burst function and the no-op one; returns the burst's bucket folder."""
    functions = work / f"functions-{table}"
    functions.mkdir()
    (functions / f"{table}.py").write_text(FUNCTION.format(table=table, batch=batch))
    (functions / "noop.py").write_text(NOOP.format(batch=batch))
    subprocess.run([basin, "--home", str(home), "deploy", str(functions)], check=True, capture_output=True)
    return home / ".basin" / "buckets" / "landing"


def noop_burst(server: Server, bucket: Path, files: int) -> tuple:
    """Seconds from the first of `files` no-op objects landing until all their events
    succeeded, and seconds spent writing them. The worker is warmed first."""
    before = server.succeeded()
    warm = bucket / "warm"
    warm.mkdir(parents=True)
    land(warm, "warm.dat", -1)
    wait_for(lambda: server.succeeded() >= before + 1, 300)
    log(f"== events: {files:,} no-op objects at once")
    folder = bucket / "burst"
    folder.mkdir()
    before = server.succeeded()
    started = time.perf_counter()
    for i in range(files):
        land(folder, f"n{i:05}.dat", i)
    landed = time.perf_counter() - started
    wait_for(lambda: server.succeeded() >= before + files, 600)
    drained = time.perf_counter() - started
    log(f"   {files:,} no-op events succeeded after {drained:.2f}s ({landed:.2f}s to land them)")
    return drained, landed


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not finish in time")
        time.sleep(0.05)


def percentile(samples: list, q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(basin: str, work: Path, files: int = 10_000, batch: int = 500, spaced: int = 100) -> list:
    """Rows of (figure, value, target) for the benchmark table."""
    home = work / "events"
    subprocess.run([basin, "init", str(home)], check=True, capture_output=True)
    bucket = deploy(basin, home, work, "burst", batch)
    server = Server(basin, home)
    try:
        # Warm the environment's worker first: the burst measures dispatch, not pip.
        folder = bucket / "warm"
        folder.mkdir(parents=True)
        land(folder, "warm.csv", -1)
        wait_for(lambda: server.count("burst") == 1, 300)

        log(f"== events: {files:,} files at once")
        folder = bucket / "burst"
        folder.mkdir()
        started = time.perf_counter()
        for i in range(files):
            land(folder, f"f{i:05}.csv", i)
        landed = time.perf_counter() - started
        wait_for(lambda: server.count("burst") == files + 1, 600)
        burst = time.perf_counter() - started
        rows = server.query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM bench.burst WHERE id >= 0")[0]
        assert rows == {"n": files, "ids": files}, rows
        commits = len(json.loads(subprocess.run([basin, "--home", str(home), "log", "-n", "100000", "--format", "json"],
                                                check=True, capture_output=True, text=True).stdout))
        log(f"   {files:,} files in the table after {burst:.2f}s ({landed:.2f}s to land them), {commits} commits")

        noop, noop_landed = noop_burst(server, bucket.parent / "quiet", files)

        log(f"== events: {spaced} files, 100 ms apart")
        folder = bucket / "spaced"
        folder.mkdir()
        before = server.count("burst")
        for i in range(spaced):
            land(folder, f"s{i:03}.csv", files + i)
            time.sleep(0.1)
        wait_for(lambda: server.count("burst") == before + spaced, 120)
        # Exact decimals come as JSON strings (the HTTP API keeps their digits).
        latencies = [(float(r["started"]) - float(r["landed"])) * 1000 for r in
                     server.query(f"SELECT landed, started FROM bench.burst WHERE id >= {files}")]

        log(f"== idle: {IDLE_SECONDS}s after the keep-alive ({KEEP_ALIVE_SECONDS}s)")
        server.http.close()  # a client holding a connection open is not the server's work
        time.sleep(KEEP_ALIVE_SECONDS + 2)
        cpu_before = server.thread_cpu()
        time.sleep(IDLE_SECONDS)
        idle_cpu = server.cpu_between(cpu_before, server.thread_cpu())
        workers = server.workers()
    finally:
        server.stop()
    return [
        (f"{files:,} one-row CSV files dropped at once -> all rows in the table [s]", burst, "20"),
        ("  of which writing the files [s]", landed, ""),
        ("  commits to the table", float(commits), ""),
        (f"{files:,} no-op object events dropped at once -> all succeeded [s]", noop, ""),
        ("  of which writing the files [s]", noop_landed, ""),
        ("  no-op events drained per second", files / noop, "2000"),
        ("file landing -> handler start, one at a time, p50 [ms]", statistics.median(latencies), ""),
        ("file landing -> handler start, one at a time, p99 [ms]", percentile(latencies, 0.99), ""),
        (f"idle server CPU over {IDLE_SECONDS} s [ms]", idle_cpu * 1000, "0"),
        (f"workers alive after the keep-alive ({KEEP_ALIVE_SECONDS} s)", float(workers), "0"),
    ]
