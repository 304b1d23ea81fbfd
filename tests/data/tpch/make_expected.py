#!/usr/bin/env python3
"""Regenerate the DuckDB expected results for the 22 TPC-H queries.

Developer tool only: CI never runs this, it only reads the checked-in
sf*/qNN.csv files.

    python3 -m venv /tmp/tpch-venv && . /tmp/tpch-venv/bin/activate
    pip install duckdb==2.0.0 tpchgen-cli==4.0.0
    python3 tests/data/tpch/make_expected.py            # writes tests/data/tpch/sf0.01/
    python3 tests/data/tpch/make_expected.py --compare-double   # also report DOUBLE-typed drift

Steps:
  1. `tpchgen-cli csv -s <SF> -o <tmpdir>` generates the 8 tables as CSV
     (same generator and same CSV text as the Rust `tpchgen` crate v4).
  2. The CSVs are loaded into an in-memory DuckDB with the standard TPC-H
     types (DECIMAL(15,2) money/quantity/discount/tax, DATE dates,
     INTEGER/BIGINT keys, VARCHAR strings).
  3. Each queries/qNN.sql is executed; for q15 (create view; select; drop
     view) the result of the SELECT is kept.
  4. Each result is written as <out>/sf<SF>/qNN.csv: header row, comma
     delimiter, RFC 4180 minimal quoting, "\n" line ends, DECIMAL rendered
     as a plain fixed-point number with DuckDB's scale, DOUBLE as Python's
     shortest round-trip repr, DATE as YYYY-MM-DD, NULL as an empty field.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import hashlib
import io
import math
import pathlib
import shutil
import subprocess
import sys
import tempfile

import duckdb

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]  # tests/data/tpch -> repo root

# Standard TPC-H schema. `money` is substituted per variant.
SCHEMA = {
    "region": [("r_regionkey", "INTEGER"), ("r_name", "VARCHAR"), ("r_comment", "VARCHAR")],
    "nation": [("n_nationkey", "INTEGER"), ("n_name", "VARCHAR"), ("n_regionkey", "INTEGER"),
               ("n_comment", "VARCHAR")],
    "supplier": [("s_suppkey", "BIGINT"), ("s_name", "VARCHAR"), ("s_address", "VARCHAR"),
                 ("s_nationkey", "INTEGER"), ("s_phone", "VARCHAR"), ("s_acctbal", "{money}"),
                 ("s_comment", "VARCHAR")],
    "customer": [("c_custkey", "BIGINT"), ("c_name", "VARCHAR"), ("c_address", "VARCHAR"),
                 ("c_nationkey", "INTEGER"), ("c_phone", "VARCHAR"), ("c_acctbal", "{money}"),
                 ("c_mktsegment", "VARCHAR"), ("c_comment", "VARCHAR")],
    "part": [("p_partkey", "BIGINT"), ("p_name", "VARCHAR"), ("p_mfgr", "VARCHAR"),
             ("p_brand", "VARCHAR"), ("p_type", "VARCHAR"), ("p_size", "INTEGER"),
             ("p_container", "VARCHAR"), ("p_retailprice", "{money}"), ("p_comment", "VARCHAR")],
    "partsupp": [("ps_partkey", "BIGINT"), ("ps_suppkey", "BIGINT"), ("ps_availqty", "INTEGER"),
                 ("ps_supplycost", "{money}"), ("ps_comment", "VARCHAR")],
    "orders": [("o_orderkey", "BIGINT"), ("o_custkey", "BIGINT"), ("o_orderstatus", "VARCHAR"),
               ("o_totalprice", "{money}"), ("o_orderdate", "DATE"), ("o_orderpriority", "VARCHAR"),
               ("o_clerk", "VARCHAR"), ("o_shippriority", "INTEGER"), ("o_comment", "VARCHAR")],
    "lineitem": [("l_orderkey", "BIGINT"), ("l_partkey", "BIGINT"), ("l_suppkey", "BIGINT"),
                 ("l_linenumber", "INTEGER"), ("l_quantity", "{qty}"), ("l_extendedprice", "{money}"),
                 ("l_discount", "{money}"), ("l_tax", "{money}"), ("l_returnflag", "VARCHAR"),
                 ("l_linestatus", "VARCHAR"), ("l_shipdate", "DATE"), ("l_commitdate", "DATE"),
                 ("l_receiptdate", "DATE"), ("l_shipinstruct", "VARCHAR"), ("l_shipmode", "VARCHAR"),
                 ("l_comment", "VARCHAR")],
}

# name -> (type for money/discount/tax columns, type for l_quantity)
VARIANTS = {
    "decimal": ("DECIMAL(15,2)", "DECIMAL(15,2)"),  # TPC-H standard; the checked-in files
    "double": ("DOUBLE", "DOUBLE"),
    # What arrow-csv / DataFusion schema inference gives for tpchgen CSV:
    # "17" -> Int64, "24710.35" -> Float64.
    "inferred": ("DOUBLE", "BIGINT"),
}


def generate(sf: str, dest: pathlib.Path) -> None:
    exe = shutil.which("tpchgen-cli")
    if exe is None:
        sys.exit("tpchgen-cli not on PATH: pip install tpchgen-cli==4.0.0")
    subprocess.run([exe, "csv", "-s", sf, "-o", str(dest), "--no-progress", "--quiet"], check=True)


def load(csv_dir: pathlib.Path, variant: str) -> duckdb.DuckDBPyConnection:
    money, qty = VARIANTS[variant]
    con = duckdb.connect(":memory:")
    for table, cols in SCHEMA.items():
        coldefs = ", ".join(f"{n} {t.format(money=money, qty=qty)}" for n, t in cols)
        con.execute(f"CREATE TABLE {table} ({coldefs})")
        path = csv_dir / f"{table}.csv"
        con.execute(
            f"COPY {table} FROM '{path}' (FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', "
            f"DATEFORMAT '%Y-%m-%d')"
        )
        n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        expected = sum(1 for _ in open(path)) - 1
        assert n == expected, (table, n, expected)
    return con


def statements(sql: str) -> list[str]:
    # The query files contain no ';' inside literals, so a plain split is safe.
    lines = [l for l in sql.splitlines() if not l.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def run_query(con, sql: str):
    """Run every statement; return (column names, column types, rows) of the SELECT."""
    result = None
    for stmt in statements(sql):
        cur = con.execute(stmt)
        if stmt.lower().startswith(("select", "with")):
            result = ([d[0] for d in cur.description], [str(d[1]) for d in cur.description],
                      cur.fetchall())
    assert result is not None, "no SELECT in query file"
    return result


def render(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        r = repr(v)
        if "e" in r or "E" in r:
            r = format(decimal.Decimal(r), "f")
        return r
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return str(v)


def write_csv(path: pathlib.Path, names, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    w.writerow(names)
    for row in rows:
        w.writerow([render(v) for v in row])
    path.write_text(buf.getvalue())


def run_all(con, qdir: pathlib.Path):
    out = {}
    for q in range(1, 23):
        path = qdir / f"q{q:02d}.sql"
        out[q] = run_query(con, path.read_text())
    return out


def close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, (int, float, decimal.Decimal)) and isinstance(b, (int, float, decimal.Decimal)):
        a, b = float(a), float(b)
        return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))
    return a == b


def compare(base, other, label: str) -> None:
    print(f"\n--- {label} vs decimal ---")
    for q in range(1, 23):
        bn, bt, br = base[q]
        on, ot, orow = other[q]
        notes = []
        if len(br) != len(orow):
            notes.append(f"ROW COUNT {len(br)} -> {len(orow)}")
        typechg = [f"{n}:{a}->{b}" for n, a, b in zip(bn, bt, ot) if a != b]
        if typechg:
            notes.append("types " + ", ".join(typechg))
        exact = sum(1 for x, y in zip(br, orow) for a, b in zip(x, y) if a != b and render(a) != render(b))
        mism = [(i, j, x[j], y[j]) for i, (x, y) in enumerate(zip(br, orow))
                for j in range(len(x)) if not close(x[j], y[j])]
        if mism:
            notes.append(f"{len(mism)} cells differ beyond 1e-9 rel, e.g. row {mism[0][0]} "
                         f"col {bn[mism[0][1]]}: {render(mism[0][2])} vs {render(mism[0][3])}")
        if exact:
            notes.append(f"{exact} cells render differently (within 1e-9 rel unless listed above)")
        print(f"q{q:02d}: " + ("; ".join(notes) if notes else "identical"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", default="0.01", help="TPC-H scale factor (default 0.01)")
    ap.add_argument("--queries", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent / "queries",
                    help="directory holding q01.sql..q22.sql (default: tests/data/tpch/queries)")
    ap.add_argument("--out", type=pathlib.Path, default=HERE, help="output root (default: this folder)")
    ap.add_argument("--data", type=pathlib.Path, default=None,
                    help="reuse tpchgen-cli CSVs from this folder instead of generating them")
    ap.add_argument("--compare-double", action="store_true",
                    help="also run with DOUBLE / inferred numeric types and report differences")
    args = ap.parse_args()

    print(f"duckdb {duckdb.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = pathlib.Path(tmp) / "data"
            generate(args.sf, data)
        base = run_all(load(data, "decimal"), args.queries)
        outdir = args.out / f"sf{args.sf}"
        outdir.mkdir(parents=True, exist_ok=True)
        for q, (names, types, rows) in base.items():
            write_csv(outdir / f"q{q:02d}.csv", names, rows)
            sha = hashlib.sha256((args.queries / f"q{q:02d}.sql").read_bytes()).hexdigest()[:16]
            print(f"q{q:02d}: {len(rows):4d} rows  sql-sha256 {sha}  "
                  + ", ".join(f"{n} {t}" for n, t in zip(names, types)))
        if args.compare_double:
            for variant in ("double", "inferred"):
                compare(base, run_all(load(data, variant), args.queries), variant)


if __name__ == "__main__":
    main()
