"""A query's latency while a function spins on every core, with `[functions] nice` at each
value given (default: 0, Basin's own priority, and 10, the default):

    python bench/contention.py BASIN [NICE ...] [--rows N] [--runs N]

One lakehouse (a table of N rows, 2 million by default, of 100 groups), one `basin serve`
per nice value, which serves both the query (`POST /api/v1/query`, a group-by over the
table) and the function (`POST /fn/hog`: it forks a process per core and spins them all for
20 s). The query's latency is taken idle, then while the function spins. Prints a markdown
table with the machine and the date.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving  # noqa: E402

QUERY = "SELECT k, count(*) AS n, sum(amount) AS total FROM bench.t GROUP BY k ORDER BY k"

HOG = '''
import os, time
import basin

@basin.python("{python}", timeout="60s")
@basin.http()
def hog(event, context):
    """Spins every core for event["seconds"]."""
    end = time.time() + event["seconds"]
    children = []
    for _ in range(os.cpu_count() - 1):
        pid = os.fork()
        if pid == 0:
            while time.time() < end:
                pass
            os._exit(0)
        children.append(pid)
    while time.time() < end:
        pass
    for pid in children:
        os.waitpid(pid, 0)
    return {{"spun": event["seconds"]}}
'''


def machine() -> str:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                     platform.processor())
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def table(basin: str, home: Path, rows: int) -> None:
    """A new lakehouse at `home` with `bench.t`: `rows` rows of (id, k, amount), 100 groups of k."""
    subprocess.run([basin, "init", str(home)], check=True, capture_output=True)
    csv = home / "t.csv"
    with csv.open("w") as f:
        f.write("id,k,amount\n")
        for i in range(rows):
            f.write(f"{i},{i % 100},{i % 997}.25\n")
    subprocess.run([basin, "--home", str(home), "import", str(csv), "--table", "bench.t"],
                   check=True, capture_output=True)
    csv.unlink()


def lakehouse(basin: str, home: Path, rows: int) -> None:
    table(basin, home, rows)
    functions = home / "functions"
    functions.mkdir()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    (functions / "hog.py").write_text(HOG.format(python=python))
    subprocess.run([basin, "--home", str(home), "deploy", str(functions)], check=True, capture_output=True)


def post(port: int, path: str, body: dict, token: str = None) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    # Queries run each time (no answer from the result cache): their cost is what is measured.
    headers = {"content-type": "application/json", "cache-control": "no-cache"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    connection.request("POST", path, body=json.dumps(body), headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read() or b"null")
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"POST {path}: {response.status} {answer}")
    return answer


def latencies(port: int, runs: int, until: float = float("inf")) -> list:
    samples = []
    for _ in range(runs):
        if time.monotonic() > until:
            break
        started = time.perf_counter()
        assert post(port, "/api/v1/query", {"sql": QUERY})["row_count"] == 100
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure(basin: str, home: Path, nice: int, runs: int) -> dict:
    (home / "basin.toml").write_text(f"[functions]\nnice = {nice}\n")
    # The caller's environment (HOME: where the function's environment was built by deploy).
    proc = subprocess.Popen([basin, "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--no-auth"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn"})
    ports = serving.listening(proc)
    try:
        port = ports["http"]
        latencies(port, 3)  # warm: the table's metadata, the session
        post(port, "/fn/hog", {"seconds": 0.2})  # warm: the environment's worker
        idle = latencies(port, runs)
        spin = 20.0
        hog = threading.Thread(target=post, args=(port, "/fn/hog", {"seconds": spin}), daemon=True)
        started = time.monotonic()
        hog.start()
        time.sleep(1.0)  # the function's processes are spinning
        busy = latencies(port, runs, until=started + spin - 1.0)
        hog.join()
        return {"idle": idle, "busy": busy}
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("basin")
    parser.add_argument("nice", nargs="*", type=int, default=[0, 10])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        home = Path(work) / "lakehouse"
        lakehouse(args.basin, home, args.rows)
        results = [(nice, measure(args.basin, home, nice, args.runs)) for nice in args.nice]
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"Query latency while a function spins on every core; {machine()}; "
          f"{now:%Y-%m-%d %H:%M} UTC; {args.rows:,} rows, `{QUERY}`\n")
    print("| `[functions] nice` | idle p50 [ms] | busy p50 [ms] | busy max [ms] | busy / idle | queries |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for nice, r in results:
        idle, busy = statistics.median(r["idle"]), statistics.median(r["busy"])
        print(f"| {nice} | {idle:.1f} | {busy:.1f} | {max(r['busy']):.1f} | {busy / idle:.2f}x | {len(r['busy'])} |")


if __name__ == "__main__":
    main()
