"""Scans plan their files per query (issue #18): the filters become an Iceberg predicate and
files whose column bounds cannot match are never opened. Pruning must never change an
answer: every query here is checked against the same rows counted in Python, on a table of
six files with disjoint ranges of every type."""

import datetime as dt
from decimal import Decimal

import pytest

FILES = 6
ROWS = 500


def row(i):
    day = dt.date(2024, 1, 1) + dt.timedelta(days=i // 10)
    ts = dt.datetime(2024, 1, 1, 0, 0) + dt.timedelta(minutes=7 * i)
    return {"id": i, "day": day, "amount": Decimal(i) / 4, "ts": ts, "code": f"c{i:05}",
            "flag": i % 3 == 0, "score": i * 0.5}


ALL = [row(i) for i in range(FILES * ROWS)]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from conftest import BASIN, Basin
    import subprocess
    home = tmp_path_factory.mktemp("pruning") / "lh"
    subprocess.run([BASIN, "init", str(home)], check=True, capture_output=True)
    lakehouse = Basin(home)
    for f in range(FILES):
        path = home.parent / f"part{f}.csv"
        lines = ["id,day,amount,ts,code,flag,score"]
        for r in ALL[f * ROWS:(f + 1) * ROWS]:
            lines.append(f"{r['id']},{r['day']},{r['amount']:.2f},{r['ts']:%Y-%m-%d %H:%M:%S},"
                         f"{r['code']},{str(r['flag']).lower()},{r['score']}")
        path.write_text("\n".join(lines) + "\n")
        lakehouse("import", str(path), "--table", "p.t")
    return lakehouse


CASES = [
    ("id = 1234", lambda r: r["id"] == 1234),
    ("id BETWEEN 400 AND 1100", lambda r: 400 <= r["id"] <= 1100),
    ("id > 2990 OR id < 3", lambda r: r["id"] > 2990 or r["id"] < 3),
    ("id IN (5, 1500, 2999)", lambda r: r["id"] in (5, 1500, 2999)),
    ("NOT (id < 2500)", lambda r: not r["id"] < 2500),
    ("day = DATE '2024-02-10'", lambda r: r["day"] == dt.date(2024, 2, 10)),
    ("day >= DATE '2024-04-01'", lambda r: r["day"] >= dt.date(2024, 4, 1)),
    ("amount = 300.25", lambda r: r["amount"] == Decimal("300.25")),
    ("amount < 10", lambda r: r["amount"] < 10),
    ("ts >= TIMESTAMP '2024-01-10 00:00:00' AND ts < TIMESTAMP '2024-01-11 00:00:00'",
     lambda r: dt.datetime(2024, 1, 10) <= r["ts"] < dt.datetime(2024, 1, 11)),
    ("code = 'c02500'", lambda r: r["code"] == "c02500"),
    ("code >= 'c02990'", lambda r: r["code"] >= "c02990"),
    ("code LIKE 'c001%'", lambda r: r["code"].startswith("c001")),
    ("flag AND id < 100", lambda r: r["flag"] and r["id"] < 100),
    ("score > 1400.0", lambda r: r["score"] > 1400.0),
    ("id + 1 = 1000", lambda r: r["id"] + 1 == 1000),
    ("id = 99999", lambda r: False),
]


@pytest.mark.parametrize("where,check", CASES, ids=[c[0] for c in CASES])
def test_pruned_scans_answer_as_full_ones(table, where, check):
    got = table("query", f"SELECT count(*) AS n, coalesce(sum(id), 0) AS s FROM p.t WHERE {where}",
                "--format", "csv").splitlines()[1]
    matching = [r["id"] for r in ALL if check(r)]
    assert got == f"{len(matching)},{sum(matching)}", where


def test_a_selective_filter_opens_one_file(table):
    def files(where):
        """The files the plan reads (EXPLAIN names up to 5, then says `...`)."""
        plan = table("query", f"EXPLAIN SELECT count(*) AS n FROM p.t WHERE {where}", "--format", "csv")
        scan = plan[plan.index("DataSourceExec"):]
        return scan.count(".parquet") + (1 if ".parquet, ...]" in scan else 0)

    assert files("id = 1234") == 1
    assert files("day >= DATE '2024-10-01'") == 1
    assert files("code = 'c00007'") == 1
    assert files("id BETWEEN 400 AND 1100") == 3
    assert files("score > 0") > 5, "a filter every file may match prunes nothing"


def test_a_second_process_reads_the_columns_the_first_kept(table, lakehouse, tmp_path):
    """`basin query` is a process per query: what its scan decodes is kept in the lakehouse's
    `.basin/columns` (`[sql] column_cache_disk`) and the next process reads it from there
    (a read marks its file), answering the same; "0" keeps nothing there."""
    import os
    import time

    kept = table.home / ".basin" / "columns"
    sql = "SELECT code, sum(score) AS s FROM p.t WHERE id % 7 = 3 GROUP BY code ORDER BY code"
    for old in kept.glob("*"):
        old.unlink()
    first = table("query", sql, "--format", "csv")
    files = sorted(kept.glob("*.arrow"))
    # Three columns (id, code, score) of each of the six files.
    assert len(files) == 3 * FILES, files
    assert not list(kept.glob(".*.tmp"))
    hour_ago = time.time() - 3600
    for f in files:
        os.utime(f, (hour_ago, hour_ago))
    assert table("query", sql, "--format", "csv") == first
    read = [f for f in files if f.stat().st_mtime > hour_ago + 60]
    assert len(read) == len(files), f"{len(read)} of {len(files)} read back"
    expected = [r for r in ALL if r["id"] % 7 == 3]
    assert len(first.splitlines()) == len(expected) + 1

    # A kept file that does not read back is decoded again from the data file.
    files[0].write_bytes(b"not an Arrow file")
    assert table("query", sql, "--format", "csv") == first
    assert files[0].stat().st_size > 100

    (lakehouse.home / "basin.toml").write_text('[sql]\ncolumn_cache_disk = "0"\n')
    (tmp_path / "few.csv").write_text("id,name\n1,a\n2,b\n")
    lakehouse("import", str(tmp_path / "few.csv"), "--table", "s.few")
    assert lakehouse("query", "SELECT name FROM s.few ORDER BY id", "--format", "csv") == "name\na\nb\n"
    assert not (lakehouse.home / ".basin" / "columns").exists()
