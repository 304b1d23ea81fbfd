"""What a spare child's walls cost (issue #18, item 3): the CPU of a process forked from a
worker that builds its walls ahead of its request (`confine_ahead`: a user namespace, the
limits, the network and mount namespaces, the Landlock ruleset) and exits, as every warm
invocation's process does first.

    PYTHON bench/spare_cost.py [--sdk python/] [--spares 40]

Run it as Basin runs its workers (as root, the Landlock rules then grant /etc entry by
entry), with any Python 3.11; `--sdk` is the folder holding the `basin` package to measure,
so two checkouts give an A/B. Prints a markdown table with the machine and the date.
"""

import argparse
import datetime as dt
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from fork_cost import machine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sdk", default=str(Path(__file__).resolve().parent.parent / "python"))
    p.add_argument("--spares", type=int, default=40)
    args = p.parse_args()
    sys.path.insert(0, args.sdk)
    from basin import _sandbox

    ahead = {"internet": False, "read": [sys.prefix], "write": [], "workdir": "", "strict": True,
             "off": [], "limits": {"processes": 512, "open_files": 4096, "file_size": 1 << 32}}
    try:
        _sandbox.prepare(ahead)
    except TypeError:
        _sandbox.prepare()  # an SDK from before 421ef3a, which opened the rules in each spare
    cpu, wall = [], []
    for _ in range(args.spares):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _sandbox.own_user_namespace()
                code = 3 if _sandbox.confine_ahead(ahead, []).missing else 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        wall.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("a wall could not be built here (see `basin doctor`)")
        time.sleep(0.01)
    print(f"Machine: {machine()}  ")
    print(f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}  ")
    print()
    print("| a spare's walls, built ahead (fork, confine_ahead, exit) | value |")
    print("| --- | ---: |")
    print(f"| CPU of the spare, p50 [ms] | {statistics.median(cpu):.2f} |")
    print(f"| fork to its end, p50 [ms] | {statistics.median(wall):.2f} |")


if __name__ == "__main__":
    main()
