"""A reader's query latency while another token floods the server with heavy queries, at
each `[server] max_queries_per_reader` given (default: 4, the default, and 64, as if there
were no limit but the connection slots):

    python bench/reader_turns.py BASIN [LIMIT ...] [--rows N] [--hogs N] [--runs N]

One lakehouse (a table of N rows, 2 million by default, of 100 groups), one `basin serve`
per limit, asking for tokens. One token sends `--hogs` heavy queries at once over HTTP (a
count over a long series, about a second each on one core), each sent again as soon as it
answers; another token's group-by over the table is timed, idle and then under the flood.
Prints a markdown table with the machine and the date.
"""

import argparse
import datetime
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving  # noqa: E402
from contention import QUERY, machine  # noqa: E402

HEAVY = "SELECT count(*) AS n FROM generate_series(1, 200000000)"


def lakehouse(basin: str, home: Path, rows: int) -> tuple:
    """The table, and two reader tokens: (hog, reader)."""
    subprocess.run([basin, "init", str(home)], check=True, capture_output=True)
    csv = home / "t.csv"
    with csv.open("w") as f:
        f.write("id,k,amount\n")
        for i in range(rows):
            f.write(f"{i},{i % 100},{i % 997}.25\n")
    subprocess.run([basin, "--home", str(home), "import", str(csv), "--table", "bench.t"],
                   check=True, capture_output=True)
    csv.unlink()
    token = lambda: subprocess.run([basin, "--home", str(home), "token", "create", "--role", "reader"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    return token(), token()


def post(port: int, token: str, sql: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    # Queries run each time (no answer from the result cache): their cost is what is measured.
    headers = {"content-type": "application/json", "cache-control": "no-cache",
               "authorization": f"Bearer {token}"}
    connection.request("POST", "/api/v1/query", body=json.dumps({"sql": sql}), headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read() or b"null")
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{sql}: {response.status} {answer}")
    return answer


def latencies(port: int, token: str, runs: int) -> list:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        assert post(port, token, QUERY)["row_count"] == 100
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure(basin: str, home: Path, tokens: tuple, limit: int, hogs: int, runs: int) -> dict:
    hog, reader = tokens
    (home / "basin.toml").write_text(f"[server]\nmax_queries_per_reader = {limit}\n")
    proc, ports = serving.start(basin, home, tokens=True)
    stop = threading.Event()
    try:
        port = ports["http"]
        latencies(port, reader, 3)  # warm: the table's metadata, the session
        idle = latencies(port, reader, runs)

        def flood():
            while not stop.is_set():
                try:
                    post(port, hog, HEAVY)
                except (OSError, RuntimeError):
                    return  # the server was stopped under it
        threads = [threading.Thread(target=flood, daemon=True) for _ in range(hogs)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # the flood is running
        busy = latencies(port, reader, runs)
        return {"idle": idle, "busy": busy}
    finally:
        stop.set()
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("basin")
    parser.add_argument("limits", nargs="*", type=int, default=[4, 64])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--hogs", type=int, default=32)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        home = Path(work) / "lakehouse"
        tokens = lakehouse(args.basin, home, args.rows)
        results = [(limit, measure(args.basin, home, tokens, limit, args.hogs, args.runs))
                   for limit in args.limits]
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"A reader's query latency while another token sends {args.hogs} heavy queries at once; "
          f"{machine()}; {now:%Y-%m-%d %H:%M} UTC; {args.rows:,} rows, `{QUERY}`; the flood: `{HEAVY}`\n")
    print("| `max_queries_per_reader` | idle p50 [ms] | flooded p50 [ms] | flooded max [ms] | flooded / idle |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for limit, r in results:
        idle, busy = statistics.median(r["idle"]), statistics.median(r["busy"])
        print(f"| {limit} | {idle:.1f} | {busy:.1f} | {max(r['busy']):.1f} | {busy / idle:.2f}x |")


if __name__ == "__main__":
    main()
