"""Installing Basin as a user does, timed: the wheel `scripts/dist.sh` built, `pip install`ed
into a fresh virtual environment in a fresh folder (uv, its one dependency, from pip's cache
after the first round), then `basin --version` and `basin demo` from that environment with a
fresh HOME (so the demo builds its function environment once, from uv's cache).

Prints a markdown table with the machine and the date: the wheel's size and the binary's
inside it, and per step the median seconds of --rounds rounds.

    python bench/install.py dist/basin_lakehouse-0.1.0-*.whl --rounds 3
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def timed(args, **kwargs) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return seconds


# What a new user's shell still has: the machine's network settings (proxies, the
# certificates TLS trusts, package indexes) and locale.
KEPT = re.compile(r"^(SSL_CERT_(FILE|DIR)|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|PIP_.*|UV_.*|"
                  r"(HTTPS?|NO|ALL)_PROXY|(https?|no|all)_proxy|LANG|LC_.*)$")


def user_env(tmp: Path) -> dict:
    """A new user's environment: a fresh HOME (so Basin's cache, and any `uv` it would
    install there, start empty), system folders on PATH only (no checkout, no test venv, no
    `uv`), no PYTHONPATH and no BASIN_* settings. pip's and uv's caches stay shared, so
    nothing is downloaded twice."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    real = Path(os.environ["HOME"])
    env = {name: value for name, value in os.environ.items() if KEPT.match(name)}
    env.update({
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "TMPDIR": str(tmp),
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(real / ".cache" / "uv")),
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(real / ".cache" / "pip")),
    })
    return env


def one_round(wheel: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = user_env(tmp)
        venv = tmp / "venv"
        result = {"venv": timed([sys.executable, "-m", "venv", str(venv)], env=env)}
        result["pip install"] = timed([str(venv / "bin" / "pip"), "install", "--quiet",
                                       "--disable-pip-version-check", str(wheel)], env=env, cwd=tmp)
        result["basin --version"] = min(timed([str(venv / "bin" / "basin"), "--version"], env=env)
                                        for _ in range(5))
        result["basin demo"] = timed([str(venv / "bin" / "basin"), "demo"], env=env, cwd=tmp)
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [one_round(args.wheel) for _ in range(args.rounds)]
    binary = next(i for i in zipfile.ZipFile(args.wheel).infolist() if i.filename.endswith("/scripts/basin"))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"Wheel `{args.wheel.name}`: {args.wheel.stat().st_size / 2**20:.1f} MiB "
          f"(the binary inside: {binary.file_size / 2**20:.1f} MiB)\n")
    print(f"| step | median of {args.rounds} (s) | all (s) |")
    print("|---|---|---|")
    for step in rounds[0]:
        values = [r[step] for r in rounds]
        print(f"| {step} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
