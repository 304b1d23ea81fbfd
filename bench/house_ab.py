"""A/B of two basin binaries on the paths a reshaping of the code could slow: a catalog write
and a function's round trip, each through the CLI as a user runs them.

For each round, each binary in turn (A, B, A, B, ...: this VM's drift hits both alike):
- `basin branch create` then `basin branch rm`, --writes times: the median milliseconds of one
  catalog write, process start included (SQLite catalog, fsynced);
- `basin invoke noop.py:noop`, --calls times after one warm-up call (which builds or finds the
  function's environment): the median milliseconds of one invocation, process start, runtime
  start and a confined worker included.
TPC-H is compared by `bench/tpch_ab.py --binaries A=...,B=...`. Prints a markdown table with
the machine and the date.

    python bench/house_ab.py --binaries A=/tmp/basin-A,B=target/release/basin
"""

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

NOOP = '''import basin


@basin.python("3.11")
def noop():
    return {"ok": True}
'''


def run(binary: str, cwd: Path, *args: str) -> float:
    """Seconds one command took; fails loudly if it fails."""
    start = time.perf_counter()
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{binary} {' '.join(args)} failed:\n{done.stderr}")
    return seconds


def lakehouse(binary: str, root: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=root))
    run(binary, folder, "init")
    (folder / "noop.py").write_text(NOOP)
    return folder


def writes(binary: str, folder: Path, n: int) -> float:
    times = []
    for i in range(n):
        name = f"ab-{time.monotonic_ns()}-{i}"
        times.append(run(binary, folder, "branch", "create", name))
        run(binary, folder, "branch", "rm", name)
    return statistics.median(times) * 1000


def calls(binary: str, folder: Path, n: int) -> float:
    run(binary, folder, "invoke", "noop.py:noop")
    return statistics.median(run(binary, folder, "invoke", "noop.py:noop") for _ in range(n)) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binaries", required=True, help="NAME=PATH,NAME=PATH")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--writes", type=int, default=20)
    p.add_argument("--calls", type=int, default=10)
    args = p.parse_args()
    binaries = dict(pair.split("=", 1) for pair in args.binaries.split(","))
    results = {name: {"write": [], "invoke": []} for name in binaries}
    with tempfile.TemporaryDirectory() as root:
        folders = {name: lakehouse(path, Path(root)) for name, path in binaries.items()}
        for r in range(args.rounds):
            for name, path in binaries.items():
                w = writes(path, folders[name], args.writes)
                c = calls(path, folders[name], args.calls)
                results[name]["write"].append(w)
                results[name]["invoke"].append(c)
                print(f"round {r + 1} {name}: write {w:.1f} ms, invoke {c:.1f} ms", flush=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\n{platform.node()} ({os.cpu_count()} cores, {cpu}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| binary | catalog write (ms, median per round) | invocation round trip (ms, median per round) |")
    print("|---|---|---|")
    for name in binaries:
        w = ", ".join(f"{x:.1f}" for x in results[name]["write"])
        c = ", ".join(f"{x:.1f}" for x in results[name]["invoke"])
        print(f"| {name} | {w} | {c} |")


if __name__ == "__main__":
    main()
