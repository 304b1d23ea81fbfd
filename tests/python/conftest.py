"""Fixtures that drive the real `basin` binary in a fresh temporary lakehouse."""

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BASIN = os.environ.get("BASIN_BIN", "basin")


def wait_for(condition, seconds: float = 60, show=None):
    """Polls `condition` every quarter second until it holds; fails the test after `seconds`,
    with what `show()` returns then (the state that never came, for the reader of a CI log)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            seen = f"; then: {show()}" if show else ""
            raise AssertionError(f"timed out after {seconds}s{seen}")
        time.sleep(0.25)


class Basin:
    """Runs `basin --home HOME ...` and returns stdout; fails the test on a non-zero exit."""

    def __init__(self, home: Path, env: dict | None = None):
        self.home = home
        self.env = {**os.environ, **(env or {})}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [BASIN, "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"basin {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def __call__(self, *args: str) -> str:
        return self.run(*args).stdout

    def json(self, *args: str):
        return json.loads(self(*args, "--format", "json"))


@pytest.fixture
def lakehouse(tmp_path) -> Basin:
    home = tmp_path / "lakehouse"
    home.mkdir()
    basin = Basin(home)
    subprocess.run([BASIN, "init", str(home)], check=True, capture_output=True)
    return basin


class Drained:
    """A server's stderr, read as it comes by a thread of its own. Undrained, a chatty
    server (a lost cluster node logs every retry) fills the pipe, and its next log line
    blocks the thread that writes it: the server stops answering. `read()` returns
    everything once the server has ended."""

    def __init__(self, pipe, first: list[str]):
        self.lines = first
        self.thread = threading.Thread(target=lambda: self.lines.extend(pipe), daemon=True)
        self.thread.start()

    def read(self) -> str:
        self.thread.join(timeout=30)
        return "".join(self.lines)


def start_server(lakehouse: Basin, *args: str, listen: str = "127.0.0.1:0"):
    """Starts `basin serve` on a free port of `listen`'s address (loopback unless said);
    returns its base URL and the process, whose `stderr.read()` gives the server's log once
    it has ended."""
    proc = subprocess.Popen([BASIN, "--home", str(lakehouse.home), "serve", "--listen", listen, *args],
                            stderr=subprocess.PIPE, text=True, env=lakehouse.env)
    first = []
    for _ in range(20):
        line = proc.stderr.readline()
        first.append(line)
        match = re.search(r"(https?)://(\d+\.\d+\.\d+\.\d+:\d+)", line)
        if match:
            pg = re.search(r"postgresql://[^/]+:(\d+)", line)
            proc.port = int(pg.group(1)) if pg else None  # the Postgres port, with --pg-listen
            proc.stderr = Drained(proc.stderr, first)
            return f"{match.group(1)}://{match.group(2)}", proc
    proc.kill()
    raise AssertionError("the server did not say where it listens")


@pytest.fixture
def open_server(lakehouse):
    """A `basin serve --no-auth` over the test's lakehouse, stopped after the test."""
    base, proc = start_server(lakehouse, "--no-auth")
    yield base
    proc.kill()
    proc.wait()


@pytest.fixture
def output_dir() -> Path:
    """Where tests keep what people look at afterwards (screenshots): tests/output/."""
    out = Path(__file__).resolve().parent.parent / "output"
    out.mkdir(exist_ok=True)
    return out


def metric(base, token, name):
    """One unlabelled sample of a server's /metrics, read with `token`."""
    request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(request, timeout=30).read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


def send(method, url, token=None, body=None, data=None, content_type="application/json"):
    """One HTTP request: JSON `body` (or raw `data`), optional bearer token. Returns the
    status and the decoded JSON answer (None when empty), for errors too."""
    headers = {"content-type": content_type}
    if token:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


@pytest.fixture
def orders(lakehouse, tmp_path):
    """A lakehouse with sales.orders on main (2 rows) and on dev (3 rows)."""
    (tmp_path / "orders.csv").write_text("id,amount\n1,10.50\n2,3.25\n")
    (tmp_path / "more.csv").write_text("id,amount\n3,7.00\n")
    lakehouse("import", str(tmp_path / "orders.csv"), "--table", "sales.orders")
    lakehouse("branch", "create", "dev")
    lakehouse("import", str(tmp_path / "more.csv"), "--table", "sales.orders", "--branch", "dev")
    return lakehouse
