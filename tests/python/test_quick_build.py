"""The quick build `scripts/demo.sh` makes (`cargo build --no-default-features`: no Ballista,
no Postgres wire door) runs the demo, and says what it left out wherever a missing part is
asked for, instead of failing some other way or doing nothing."""

import os
import subprocess
from pathlib import Path

import pytest


QUICK = os.environ.get("BASIN_QUICK_BIN")

if not QUICK:
    if os.environ.get("BASIN_FULL_SUITE"):
        raise RuntimeError("BASIN_QUICK_BIN is not set: scripts/test.sh builds the quick binary")
    pytest.skip("BASIN_QUICK_BIN not set (scripts/test.sh builds it)", allow_module_level=True)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BASIN_HOME"}
    return subprocess.run([QUICK, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_the_quick_build_says_what_it_left_out(tmp_path):
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert "left out of this build" in version.stdout, version.stdout
    assert "`cluster`" in version.stdout and "`postgres-wire`" in version.stdout, version.stdout
    # -V stays one line, for scripts.
    short = run("-V", cwd=tmp_path)
    assert short.stdout.strip().count("\n") == 0, short.stdout


def test_the_quick_build_runs_the_demo(tmp_path):
    home = tmp_path / "demo"
    demo = run("demo", "--dir", str(home), "--scale", "0.01", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-3000:]
    # The demo's last query, read from the merged pipeline output.
    assert "JAPAN" in demo.stdout, demo.stdout[-2000:]


def test_the_postgres_door_is_refused_before_anything_is_served(tmp_path):
    home = tmp_path / "lake"
    assert run("init", str(home), cwd=tmp_path).returncode == 0
    served = run("--home", str(home), "serve", "--listen", "127.0.0.1:0",
                 "--pg-listen", "127.0.0.1:0", cwd=tmp_path)
    assert served.returncode != 0
    assert "built without the Postgres door" in served.stderr, served.stderr
    assert "hint:" in served.stderr and "--pg-listen" in served.stderr, served.stderr


def test_a_cluster_in_basin_toml_is_refused_by_name(tmp_path):
    home = tmp_path / "lake"
    assert run("init", str(home), cwd=tmp_path).returncode == 0
    with open(home / "basin.toml", "a") as config:
        config.write('\n[sql.ballista]\nscheduler = "127.0.0.1:50050"\n')
    query = run("--home", str(home), "query", "SELECT 1", cwd=tmp_path)
    assert query.returncode != 0
    assert "built without distributed SQL" in query.stderr, query.stderr
    assert "[sql.ballista] scheduler" in query.stderr, query.stderr
