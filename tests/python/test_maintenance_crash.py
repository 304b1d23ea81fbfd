"""Crash tests for maintenance (issue #15): `basin table compact` and `basin gc` killed with
SIGKILL at points spread over their run; after each kill every ref still reads exactly what it
read (Basin and PyIceberg), and a final run finishes the job."""

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from pyiceberg.table import StaticTable

from conftest import BASIN

REFS = ["main", "keep"]


def reads(lakehouse, ref):
    out = lakehouse("query", "SELECT count(*) AS n, sum(id * 7919 + amount) AS digest FROM sales.orders",
                    "--ref", ref, "--format", "csv")
    return out.splitlines()[1]


def pyiceberg_rows(lakehouse, ref):
    show = lakehouse.json("table", "show", "sales.orders", "--ref", ref)
    return StaticTable.from_metadata(show["metadata_location"]).scan().to_arrow().num_rows


def big_files(lakehouse, tmp_path, count, rows):
    for f in range(count):
        path = tmp_path / f"part{f}.csv"
        first = f * rows
        path.write_text("id,amount\n" + "".join(f"{i},{i % 1000}.25\n" for i in range(first, first + rows)))
        lakehouse("import", str(path), "--table", "sales.orders")


def age_everything(folder: Path):
    hours_ago = time.time() - 2 * 3600
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (hours_ago, hours_ago))


def delays(seed, start=0.02, growth=1.4):
    """Ever longer waits, jittered: `start`, then about `growth` times longer each time."""
    rng = random.Random(seed)
    delay = start
    while delay < 120:
        yield delay * rng.uniform(0.9, 1.1)
        delay *= growth


def killed_after(lakehouse, delay, *args):
    """Starts `basin ARGS`, SIGKILLs it after `delay` seconds; True if it finished first."""
    proc = subprocess.Popen([BASIN, "--home", str(lakehouse.home), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def test_compaction_killed_at_any_point_leaves_every_ref_reading(lakehouse, tmp_path):
    big_files(lakehouse, tmp_path, 4, 60_000)
    lakehouse("tag", "create", "keep")
    before = {ref: reads(lakehouse, ref) for ref in REFS}
    # Kills ever later, until one compaction finishes before its kill: points all over its run.
    kills = 0
    for delay in delays(15):
        if killed_after(lakehouse, delay, "table", "compact", "sales.orders", "--target-file-size", "1GiB"):
            break  # it finished first
        assert {ref: reads(lakehouse, ref) for ref in REFS} == before, f"killed after {delay:.2f}s"
        assert pyiceberg_rows(lakehouse, "main") == 240_000
        # All or nothing: a kill between the catalog commit and the process's exit finds it done.
        files = lakehouse.json("table", "show", "sales.orders")["data_files"]
        assert files in (1, 4), f"killed after {delay:.2f}s: {files} data files"
        if files == 1:
            break
        kills += 1
    print(f"{kills} compactions killed")
    assert kills >= 3, f"only {kills} compactions were killed"
    assert lakehouse.json("table", "show", "sales.orders")["data_files"] == 1

    assert {ref: reads(lakehouse, ref) for ref in REFS} == before
    # What the killed compactions wrote is read by nothing, and gc takes it.
    age_everything(lakehouse.home)
    lakehouse("gc")
    location = Path(lakehouse.json("table", "show", "sales.orders")["location"])
    assert len(list(location.rglob("*.parquet"))) == 1 + 4, "main's one file and the tag's four, nothing else"
    assert {ref: reads(lakehouse, ref) for ref in REFS} == before
    assert pyiceberg_rows(lakehouse, "keep") == 240_000
    assert lakehouse.json("gc")["files_removed"] == 0


def test_gc_killed_at_any_point_leaves_every_ref_reading(lakehouse, tmp_path):
    big_files(lakehouse, tmp_path, 3, 20_000)
    lakehouse("tag", "create", "keep")
    # Files only history reads: replaced on main, then that history dropped.
    for n in range(24):
        path = tmp_path / f"swap{n}.csv"
        path.write_text("id,amount\n" + "".join(f"{i},{i}.5\n" for i in range(n, n + 500)))
        lakehouse("import", str(path), "--table", "sales.orders", "--mode", "replace")
    (lakehouse.home / "basin.toml").write_text(
        '[maintenance]\nkeep_snapshots = "1ms"\nkeep_history = "1ms"\n')
    lakehouse("table", "expire", "sales.orders")
    before = {ref: reads(lakehouse, ref) for ref in REFS}
    age_everything(lakehouse.home)
    # The dry run's time, at its shortest of three: one slow run (this VM's noise) would put
    # every kill past the end of the gcs it aims at.
    dry_seconds = float("inf")
    for _ in range(3):
        clock = time.monotonic()
        dry = lakehouse.json("gc", "--dry-run")
        dry_seconds = min(dry_seconds, time.monotonic() - clock)
    assert dry["files_removed"] > 40, dry

    # A gc does what its dry run does, then deletes: the first kill lands halfway through the
    # dry run's time, on a fast machine as on a slow one, and the kills come closer together
    # than the run is long. Each kill leaves less for the next gc, so a gc that ran fast (this
    # VM's noise) may finish before three kills: then the lakehouse is put back as it was and
    # the kills start earlier.
    saved = tmp_path / "saved"
    shutil.copytree(lakehouse.home, saved)
    start = dry_seconds / 2
    for attempt in range(4):
        kills = 0
        for delay in delays(16 + attempt, start=start, growth=1.1):
            if killed_after(lakehouse, delay, "gc"):
                break
            kills += 1
            assert {ref: reads(lakehouse, ref) for ref in REFS} == before, f"killed after {delay:.2f}s"
            assert pyiceberg_rows(lakehouse, "keep") == 60_000
        print(f"attempt {attempt}: {kills} gcs killed, the first after {start:.3f}s")
        if kills >= 3:
            break
        shutil.rmtree(lakehouse.home)
        shutil.copytree(saved, lakehouse.home)
        start /= 2
    assert kills >= 3, f"only {kills} gcs were killed"

    assert {ref: reads(lakehouse, ref) for ref in REFS} == before
    assert pyiceberg_rows(lakehouse, "main") == 500 and pyiceberg_rows(lakehouse, "keep") == 60_000
    assert lakehouse.json("gc")["files_removed"] == 0
