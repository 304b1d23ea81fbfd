"""An HTTP function's round trip through `basin serve` (issue #53): a no-op `@basin.http`
function called back to back over one keep-alive connection, with `[functions] reuse` on
(the call runs in the process kept from the last one: the default) and off (a fresh child
forked for every call). Both servers run the same binary, one after the other.

    python bench/http_function.py --basin target/release/basin [--calls 500]

Prints a table with the machine and the date; the first 20 calls of each mode are not
counted (they start the worker and the kept process).
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import serving
from run import machine

FUNCTION = '''
import basin


@basin.python("3.11")
@basin.http()
def noop(event, context):
    return None
'''

WARMUP = 20


def calls(basin: str, work: Path, reuse: bool, n: int) -> list:
    """Milliseconds of `n` calls of the no-op function, each from the request's first byte to
    the answer's last."""
    home = work / f"reuse-{reuse}"
    subprocess.run([basin, "init", str(home)], check=True, capture_output=True)
    (home / "basin.toml").write_text(f"[functions]\nreuse = {str(reuse).lower()}\n")
    functions = work / f"functions-{reuse}"
    functions.mkdir()
    (functions / "noop.py").write_text(FUNCTION)
    subprocess.run([basin, "--home", str(home), "deploy", str(functions)], check=True, capture_output=True)
    # The caller's environment (HOME: the environments already built, and whatever lets uv
    # reach the package index), quiet but for warnings.
    proc = subprocess.Popen([basin, "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--no-auth"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn"})
    ports = serving.listening(proc)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", ports["http"])
        ms = []
        for _ in range(n + WARMUP):
            started = time.perf_counter()
            conn.request("POST", "/fn/noop", body=b"{}", headers={"content-type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            ms.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"/fn/noop answered {response.status}: {body!r}")
        conn.close()
        return ms[WARMUP:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure(basin: str, work: Path, n: int = 500) -> list:
    """(reuse, p50 ms, p95 ms, calls) with `[functions] reuse` on, then off."""
    rows = []
    for reuse in (True, False):
        ms = sorted(calls(basin, work, reuse, n))
        p95 = ms[round((len(ms) - 1) * 0.95)]
        rows.append((reuse, statistics.median(ms), p95, len(ms)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--basin", required=True)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        rows = measure(args.basin, Path(work), args.calls)
    print(f"# HTTP function round trip through basin serve, {machine()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.basin}")
    print("| `[functions] reuse` | p50 [ms] | p95 [ms] | calls |")
    print("|---|---:|---:|---:|")
    for reuse, p50, p95, n in rows:
        label = "on (kept process)" if reuse else "off (fresh child)"
        print(f"| {label} | {p50:.2f} | {p95:.2f} | {n} |")
    json.dump({"rows": rows}, sys.stderr)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
