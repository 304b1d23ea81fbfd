"""What one fork of a function worker costs (issue #18, item 3): every invocation is a fresh
process forked from its environment's zygote, and inside the PID namespace forked again.

    PYTHON bench/fork_cost.py [--forks 30]

Run it with an environment's Python that has pyarrow and pandas (for example the one
`runtime_bench` builds under ~/.cache/basin/bench-envs/envs/*/bin/python). It imports them as
a zygote does, freezes the heap, then times `os.fork()` in the parent (the child exits at
once), forks 20 ms apart. Prints a markdown table with the machine and the date.
"""

import argparse
import datetime as dt
import gc
import os
import platform
import statistics
import time


def memory_mb() -> tuple:
    """(resident, anonymous) megabytes of this process."""
    anonymous = 0
    with open("/proc/self/smaps") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                anonymous += int(line.split()[1])
    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resident / 1e6, anonymous * 1024 / 1e6


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--forks", type=int, default=30)
    args = p.parse_args()
    import pandas  # noqa: F401 - loaded as a zygote preloads it
    import pyarrow  # noqa: F401
    import pyarrow.ipc  # noqa: F401

    gc.collect()
    gc.freeze()
    times = []
    for _ in range(args.forks):
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        times.append((time.perf_counter() - started) * 1000)
        os.waitpid(pid, 0)
        time.sleep(0.02)
    times.sort()
    resident, anonymous = memory_mb()
    print(f"Machine: {machine()}  ")
    print(f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}  ")
    print()
    print("| fork of a worker holding pyarrow and pandas | value |")
    print("| --- | ---: |")
    print(f"| resident / anonymous memory [MB] | {resident:.0f} / {anonymous:.0f} |")
    print(f"| os.fork(), p50 [ms] | {statistics.median(times):.2f} |")
    print(f"| os.fork(), p95 [ms] | {times[int(0.95 * (len(times) - 1))]:.2f} |")


if __name__ == "__main__":
    main()
