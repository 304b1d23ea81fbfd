"""Where a `basin serve` that a benchmark started listens, read from what it writes to stderr."""

import os
import re
import subprocess
import threading


def listening(proc: subprocess.Popen) -> dict:
    """Reads `proc`'s stderr (text) up to the line that says where it serves: the walls and
    notes come before it. Returns {"http": port, "pg": port or None}; a thread keeps the pipe
    drained afterwards, so the server never blocks on a full pipe."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        http = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if http:
            pg = re.search(r"postgresql://127\.0\.0\.1:(\d+)", line)
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return {"http": int(http.group(1)), "pg": int(pg.group(1)) if pg else None}
    raise RuntimeError("basin serve stopped before it listened:\n" + "".join(seen))


def start(basin: str, home, *flags: str, tokens: bool = False) -> tuple:
    """`basin serve --no-auth` on `home` on free local ports (plus `flags`, e.g. a
    `--pg-listen`), quiet but for warnings; with `tokens`, asking callers for a token. Returns
    (the process, `listening`'s ports)."""
    auth = [] if tokens else ["--no-auth"]
    # A clean environment, but for the allocator's options (`MIMALLOC_*`), for A/B runs of them.
    env = {"RUST_LOG": "warn", "PATH": "/usr/bin:/bin",
           **{k: v for k, v in os.environ.items() if k.startswith("MIMALLOC_")}}
    proc = subprocess.Popen([basin, "--home", str(home), "serve", "--listen", "127.0.0.1:0", *auth, *flags],
                            stderr=subprocess.PIPE, text=True, env=env)
    return proc, listening(proc)
