"""A reader's query latency while another token floods the server with heavy queries, at
each `[server] max_queries_per_reader` given (default: 4, the default, and 64, as if there
were no limit but the connection slots):

    python bench/reader_turns.py BASIN [LIMIT ...] [--rows N] [--hogs N] [--runs N]
                                 [--heavy SQL] [--memory-limit SIZE]

One lakehouse (a table of N rows, 2 million by default, of 100 groups), one `basin serve`
per limit, asking for tokens. One token sends `--hogs` heavy queries at once over HTTP (by
default a sum over a long series, about half a second each on one core; `--heavy` for
another, with `[sql] memory_limit` at `--memory-limit` if given), each sent again as soon as
it answers; another token's group-by over the table is timed, idle and then under the flood.
A query of the reader that fails (the memory pool taken by the flood) is counted, not timed.
Prints a markdown table with the machine and the date.
"""

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving  # noqa: E402
import contention  # noqa: E402
from contention import QUERY, machine, table  # noqa: E402

HEAVY = "SELECT sum(value % 7) AS n FROM generate_series(1, 200000000)"


def lakehouse(basin: str, home: Path, rows: int) -> tuple:
    """The table, and two reader tokens: (hog, reader)."""
    table(basin, home, rows)
    token = lambda: subprocess.run([basin, "--home", str(home), "token", "create", "--role", "reader"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    return token(), token()


def post(port: int, token: str, sql: str) -> dict:
    return contention.post(port, "/api/v1/query", {"sql": sql}, token)


def latencies(port: int, token: str, runs: int, failures: list = None) -> list:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        try:
            assert post(port, token, QUERY)["row_count"] == 100
        except RuntimeError as e:
            if failures is None:
                raise
            failures.append(str(e))
            continue
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure(basin: str, home: Path, tokens: tuple, limit: int, args) -> dict:
    hog, reader = tokens
    memory = f'[sql]\nmemory_limit = "{args.memory_limit}"\n\n' if args.memory_limit else ""
    (home / "basin.toml").write_text(f"{memory}[server]\nmax_queries_per_reader = {limit}\n")
    proc, ports = serving.start(basin, home, tokens=True)
    stop = threading.Event()
    done, failed = [], []
    try:
        port = ports["http"]
        latencies(port, reader, 3)  # warm: the table's metadata, the session
        idle = latencies(port, reader, args.runs)

        def flood():
            while not stop.is_set():
                try:
                    post(port, hog, args.heavy)
                    done.append(1)
                except RuntimeError:
                    continue  # refused (out of memory): sent again
                except OSError as e:
                    if not stop.is_set():
                        failed.append(str(e))
                    return
        threads = [threading.Thread(target=flood, daemon=True) for _ in range(args.hogs)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # the flood is running
        refused = []
        busy = latencies(port, reader, args.runs, refused)
        if failed:
            raise RuntimeError(f"the flood failed: {failed[0]}")
        return {"idle": idle, "busy": busy, "refused": refused, "flood": len(done)}
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
    parser.add_argument("--heavy", default=HEAVY)
    parser.add_argument("--memory-limit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        home = Path(work) / "lakehouse"
        tokens = lakehouse(args.basin, home, args.rows)
        results = [(limit, measure(args.basin, home, tokens, limit, args)) for limit in args.limits]
    now = datetime.datetime.now(datetime.timezone.utc)
    memory = f", `[sql] memory_limit = \"{args.memory_limit}\"`" if args.memory_limit else ""
    print(f"A reader's query latency while another token sends {args.hogs} heavy queries at once; "
          f"{machine()}; {now:%Y-%m-%d %H:%M} UTC; {args.rows:,} rows, `{QUERY}`; the flood: "
          f"`{args.heavy}`{memory}\n")
    print("| `max_queries_per_reader` | idle p50 [ms] | flooded p50 [ms] | flooded max [ms] | flooded / idle "
          "| reader's queries failed | flood queries answered |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for limit, r in results:
        idle = statistics.median(r["idle"])
        busy = statistics.median(r["busy"]) if r["busy"] else float("nan")
        worst = max(r["busy"], default=float("nan"))
        print(f"| {limit} | {idle:.1f} | {busy:.1f} | {worst:.1f} | {busy / idle:.2f}x "
              f"| {len(r['refused'])} of {args.runs} | {r['flood']} |")


if __name__ == "__main__":
    main()
