"""The web console, end to end: a real `basin serve`, driven by headless Chromium (Debian's
package, through playwright-core). Screenshots land in tests/output/."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import start_server

DRIVER = Path(__file__).resolve().parent.parent / "console" / "drive.cjs"
MODULES = os.environ.get("BASIN_NODE_MODULES", str(Path.home() / ".cache" / "basin" / "node" / "node_modules"))


@pytest.fixture
def lakehouse_with_history(orders, tmp_path):
    lakehouse = orders
    # A pipeline run, so the runs panel has per-model status and logs.
    project = tmp_path / "project"
    project.mkdir()
    (project / "basin.toml").write_text('[project]\nname = "totals"\nnamespace = "sales"\n')
    (project / "order_total.sql").write_text("SELECT sum(amount) AS total FROM orders\n")
    lakehouse("merge", "dev")
    lakehouse("run", str(project))
    return lakehouse


def test_console_runs_a_query_and_shows_tables_commits_runs_and_usage(lakehouse_with_history, output_dir):
    assert shutil.which("chromium") or os.environ.get("CHROMIUM"), "Debian's chromium is not installed"
    base, proc = start_server(lakehouse_with_history, "--no-auth")
    screenshot = output_dir / "console.png"
    try:
        out = subprocess.run(["node", str(DRIVER), base + "/", str(screenshot)], capture_output=True, text=True,
                             timeout=180, env={**os.environ, "BASIN_NODE_MODULES": MODULES})
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)

    assert seen["elsewhere"] == []  # nothing fetched from anywhere but the server
    assert {"dev (branch)", "main (branch)"} <= set(seen["refs"])
    assert seen["columns"] == ["id", "amount"]
    assert seen["grid"] == [["1", "10.50"], ["2", "3.25"], ["3", "7.00"]]  # decimal(18,2), scale kept
    assert seen["exact"] == ["8599806384497658719", "9007199254740993", "2.00", "10.50", "-0.01",
                             "-9999999999999999999999999999.9999999999"]
    assert all(seen["exact_aligned"])
    assert seen["status"].startswith("3 rows in ")
    assert seen["dev_rows"] == 3
    assert "column `nope` does not exist" in seen["error"] and "hint:" in seen["error"]
    assert seen["syntax_error"].startswith('syntax error at or near "SELEC"\nLINE 1: SELEC * FROM sales.orders\n        ^')
    assert "ParserError" not in seen["syntax_error"] and "monospace" in seen["error_font"]
    assert seen["table_headings"][1:] == ["Schema", "Snapshots", "Sample rows"]
    assert seen["sample_rows"] == 3 and seen["sample_amounts"] == ["10.50", "3.25", "7.00"]
    # Snapshot ids are random 64-bit numbers: shown digit for digit, as the CLI prints them.
    shown = json.loads(lakehouse_with_history("table", "show", "sales.orders", "--ref", "dev", "--format", "json"))
    assert sorted(seen["snapshot_ids"]) == sorted(s["snapshot_id"] for s in shown["snapshots"])
    assert all(isinstance(s["snapshot_id"], str) for s in shown["snapshots"])
    assert any(m.startswith("merge") for m in seen["commits"])
    assert seen["models"][0][:3] == ["order_total", "sql", "ok"]
    assert seen["charts"] == ["Invocations and queries per day", "GB-seconds per day", "Cost per day (USD)"]
    assert len(seen["usage"]) == 1 and int(seen["usage"][0][1]) >= 3  # the console's own queries, metered
    assert screenshot.stat().st_size > 10_000 and (output_dir / "console-query.png").exists()
