"""A/B of the front-door latency (bench/front_doors.py) between two `basin` binaries, on two
lakehouses made alike (a 25-row tpch.nation), in one run:

    python bench/front_doors_ab.py OLD_BASIN NEW_BASIN [RUNS]

Prints a markdown table with the machine and the date.
"""

import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import front_doors  # noqa: E402


def lakehouse(basin: str, home: Path) -> Path:
    home.mkdir(parents=True)
    subprocess.run([basin, "init", str(home)], check=True, capture_output=True)
    csv = home / "nation.csv"
    rows = ["n_nationkey,n_name,n_regionkey,n_comment"]
    rows += [f"{i},NATION{i:02d},{i % 5},comment {i}" for i in range(25)]
    csv.write_text("\n".join(rows) + "\n")
    subprocess.run([basin, "--home", str(home), "import", str(csv), "--table", "tpch.nation"],
                   check=True, capture_output=True)
    return home


def main():
    old, new = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    with tempfile.TemporaryDirectory() as work:
        figures = {}
        for label, basin in (("before", old), ("after", new)):
            figures[label] = dict(front_doors.measure(basin, lakehouse(basin, Path(work) / label), runs))
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"{platform.machine()}, {os.cpu_count()} cores, {now:%Y-%m-%d %H:%M} UTC")
    print("| figure | before | after |\n| --- | ---: | ---: |")
    for figure, before in figures["before"].items():
        print(f"| {figure} | {before:.1f} | {figures['after'][figure]:.1f} |")


if __name__ == "__main__":
    main()
