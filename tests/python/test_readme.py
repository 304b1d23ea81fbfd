"""The README's quick start runs as written (docs that run cannot rot)."""

import os
import re
import subprocess
from pathlib import Path

from conftest import BASIN

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start() -> str:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the quick start has a build block and a usage block"
    return blocks[1]


def test_readme_quick_start_runs(tmp_path):
    env = {**os.environ, "PATH": f"{Path(BASIN).resolve().parent}:{os.environ['PATH']}"}
    env.pop("BASIN_HOME", None)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", quick_start()], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # The tag was taken after the merge: it holds all three orders.
    assert "id,amount,day\n1,10.50,2024-01-01\n2,3.25,2024-01-02\n3,99.00,2024-01-03\n" in proc.stdout
    # The function kept the two big orders, and --to stored them.
    invoked = proc.stdout.split("id,amount\n", 1)[1].splitlines()[:2]
    assert sorted(invoked) == ["1,10.50", "3,99.00"], proc.stdout
    assert "2 big orders" in proc.stderr and "Stored 2 rows in sales.big_orders" in proc.stderr
