"""The web console, end to end: a real `basin serve` with tokens, driven by headless Chromium
(Debian's package, through playwright-core) with real typing. Screenshots land in
tests/output/; with BASIN_UPDATE_SCREENSHOTS=1 the test also refreshes the copies in
docs/console/ that the README shows."""

import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import BASIN, Basin, send, start_server

DRIVER = Path(__file__).resolve().parent.parent / "console" / "drive.cjs"
MODULES = os.environ.get("BASIN_NODE_MODULES", str(Path.home() / ".cache" / "basin" / "node" / "node_modules"))
DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "console"
PANELS = ["query", "commits", "graph", "functions", "events"]
# The chart test's queries, as tests/console/chart.cjs types them.
CHART_BY_NATION = ("SELECT n_name AS nation, sum(o_totalprice) AS total, count(*) AS orders "
                   "FROM tpch.orders JOIN tpch.customer ON o_custkey = c_custkey JOIN tpch.nation ON c_nationkey = n_nationkey "
                   "GROUP BY n_name ORDER BY total DESC LIMIT 8")
CHART_BY_MONTH = ("SELECT date_trunc('month', o_orderdate) AS month, sum(o_totalprice) AS total "
                  "FROM tpch.orders GROUP BY 1 ORDER BY 1")

FUNCTION = '''
import basin


@basin.python("3.11", timeout="5s")
@basin.http(max_attempts=1)
def score(event, context):
    print("scoring order", event["id"])
    if event.get("fail"):
        raise ValueError(f"cannot score order {event['id']}")
    return {"id": event["id"], "score": event["amount"] * 2}
'''


@pytest.fixture
def lakehouse_with_history(orders, tmp_path):
    lakehouse = orders
    # A pipeline run, so the runs panel has per-model status and logs.
    project = tmp_path / "project"
    project.mkdir()
    (project / "basin.toml").write_text('[project]\nname = "totals"\nnamespace = "sales"\n')
    (project / "order_total.sql").write_text("SELECT sum(amount) AS total FROM orders\n")
    lakehouse("merge", "dev")
    lakehouse("run", str(project), "--keep-branch")
    # A deployed function, so the functions and events panels have something to show.
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "score.py").write_text(FUNCTION)
    lakehouse("deploy", str(functions))
    # A maintenance run, so the maintenance panel lists one.
    lakehouse("maintenance", "run")
    return lakehouse


def test_console_queries_browses_and_retries_as_a_person_would(lakehouse_with_history, output_dir, tmp_path):
    assert shutil.which("chromium") or os.environ.get("CHROMIUM"), "Debian's chromium is not installed"
    lakehouse = lakehouse_with_history
    reader = lakehouse("token", "create", "--role", "reader", "--name", "analyst").strip()
    writer = lakehouse("token", "create", "--role", "writer", "--name", "ops").strip()
    limited = lakehouse("token", "create", "--name", "limited", "--grant", "read:sales.orders").strip()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    base, proc = start_server(lakehouse)
    try:
        assert send("POST", f"{base}/fn/score", writer, {"id": 1, "amount": 2})[0] == 200
        status, failed = send("POST", f"{base}/fn/score", writer, {"id": 2, "amount": 3, "fail": True})
        assert status == 500
        dead = failed["event"]
        # Readers may look but not retry: a 403 with a JSON body that says what is needed.
        status, body = send("POST", f"{base}/api/v1/events/{dead}/retry", reader, {})
        assert status == 403 and "needs a writer" in body["error"]["message"]
        before = send("GET", f"{base}/api/v1/events/{dead}", reader)[1]
        assert before["state"] == "dead"
        status, review = send("POST", f"{base}/api/v1/reviews", writer,
                              {"source": "dev", "into": "main", "title": "more orders"})
        assert status in (200, 201), review
        graph = send("GET", f"{base}/api/v1/graph", reader)[1]
        out = subprocess.run(["node", str(DRIVER), base + "/", str(output_dir), str(downloads), reader, writer, limited],
                             capture_output=True, text=True, timeout=240, env={**os.environ, "BASIN_NODE_MODULES": MODULES})
        assert out.returncode == 0, out.stderr
        after = send("GET", f"{base}/api/v1/events/{dead}", reader)[1]
    finally:
        proc.kill()
        proc.wait()
    seen = json.loads(out.stdout)

    assert seen["elsewhere"] == []  # nothing fetched from anywhere but the server
    assert "needs an access token" in seen["no_token"] and seen["who_without"] == "no token"
    assert seen["who"] == "reader · analyst"
    # Grants: a token that may read sales.orders only sees no other table in the console.
    assert seen["limited_who"] == "reader · limited", seen["limited_who"]
    assert seen["limited_schema"] == ["sales.orders"], seen["limited_schema"]
    assert seen["token_shown"][:2] == ["text", reader] and "monospace" in seen["token_shown"][2]
    assert {"dev (branch)", "main (branch)"} <= set(seen["refs"])

    # The table list, its columns and types; names clicked into the query as it is typed.
    assert seen["schema"] == [["sales.orders", [["id", "long"], ["amount", "decimal(18, 2)"]]]]
    assert seen["typed"] == "SELECT id, amount FROM sales.orders ORDER BY id"
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

    # History: newest first, failures marked, the same query once; kept across a reload.
    assert [h.split(" ")[:2] for h in seen["history"]] == [["SELEC", "*"], ["SELECT", "nope"],
                                                           ["SELECT", "CAST(8599806384497658719"], ["SELECT", "id,"]]
    assert seen["history_notes"][0].endswith("failed") and seen["history_notes"][3].endswith("3 rows")
    assert seen["history_after_reload"] == 4
    assert seen["from_history"] == "SELECT id, amount FROM sales.orders ORDER BY id"

    # Downloads hold every row, exactly.
    assert seen["downloads"] == ["query.csv", "query.parquet"]
    assert (downloads / "query.csv").read_text() == "id,amount\n1,10.50\n2,3.25\n3,7.00\n"
    table = pq.read_table(downloads / "query.parquet")
    assert table.column("amount").to_pylist() == [Decimal("10.50"), Decimal("3.25"), Decimal("7.00")]

    assert seen["table_headings"][1:] == ["Lineage", "Schema", "Snapshots", "Sample rows"]
    assert seen["sample_rows"] == 3 and seen["sample_amounts"] == ["10.50", "3.25", "7.00"]
    # Snapshot ids are random 64-bit numbers: shown digit for digit, as the CLI prints them.
    shown = json.loads(lakehouse("table", "show", "sales.orders", "--ref", "dev", "--format", "json"))
    assert sorted(seen["snapshot_ids"]) == sorted(s["snapshot_id"] for s in shown["snapshots"])
    assert all(isinstance(s["snapshot_id"], str) for s in shown["snapshots"])

    # A commit's changes, as `basin diff` says them, and the tables it holds.
    assert any(m.startswith("merge") for m in seen["commits"])
    assert set(seen["commit_doors"]) <= {"local", "api", "console", ""}, seen["commit_doors"]
    assert "local" in seen["commit_doors"], seen["commit_doors"]
    assert [r[:5] for r in seen["commit_changes"]] == [["sales.orders", "table", "changed", "+1", "+1"]]
    assert seen["commit_tables"] == ["sales.orders"]
    # The graph: exactly the API's commits, in its order, with its refs and parent links.
    assert [n[0] for n in seen["graph_nodes"]] == [e["id"] for e in graph]
    assert [n[1] for n in seen["graph_nodes"]] == [e["refs"] for e in graph]
    ids = {e["id"] for e in graph}
    links = sorted([e["id"], p, "true" if p == e.get("merge_parent") else "false"]
                   for e in graph for p in (e["parent"], e.get("merge_parent")) if p in ids)
    assert sorted(seen["graph_edges"]) == links and any(m == "true" for _, _, m in links), seen["graph_edges"]
    assert any("main" in n[1] for n in seen["graph_nodes"]) and any("dev" in n[1] for n in seen["graph_nodes"])
    assert seen["graph_picked"][1].startswith(f"Commit {seen['graph_picked'][0][:12]}: merge dev")
    # The pipeline run's branch (kept) shows only when asked for.
    assert not any(n.startswith("run/") for refs in (n[1] for n in seen["graph_nodes"]) for n in refs)
    assert any(n.startswith("run/") for n in seen["graph_with_runs"]), seen["graph_with_runs"]
    # The open review beside dev's head, and a click on it opens it.
    assert seen["graph_reviews"] == [f"review #{review['id']} → main"], seen["graph_reviews"]
    assert seen["review_opened"].startswith(f"Review #{review['id']}: more orders"), seen["review_opened"]
    assert seen["time_travel_ref"].startswith("main@")

    assert seen["function"][0] == "score"
    assert seen["function_facts"][0] == "http /fn/score" and "score.py:" in seen["function_facts"][-2]
    assert seen["function_counts"] == ["0 pending", "0 running", "1 succeeded", "0 failed", "1 dead"]
    assert "def score(event, context):" in seen["function_code"]

    assert sorted(e[2] for e in seen["events"]) == ["dead", "succeeded"]
    assert seen["event_detail"][0] == f"Event {dead}: dead Retry"
    error, logs = seen["event_blocks"][:2]
    assert "ValueError" in error and "cannot score order 2" in error and logs == "scoring order 2"
    assert seen["retry_for_reader"] == [True, "needs a writer token"]
    assert seen["retry_status"] == f"queued {dead[:12]} again"
    assert after["updated_at_ms"] > before["updated_at_ms"]  # queued again (and maybe run again)

    assert seen["models"][0][:3] == ["order_total", "sql", "ok"]
    assert seen["charts"] == ["Invocations and queries per day", "GB-seconds per day", "Cost per day (USD)"]
    assert len(seen["usage"]) == 1 and int(seen["usage"][0][1]) >= 3  # the console's own queries, metered

    assert [r[1:3] for r in seen["maintenance"]] == [["manual", "succeeded"]]

    for panel in PANELS + ["usage", "maintenance"]:
        assert (output_dir / f"console-{panel}.png").stat().st_size > 10_000, panel
    if os.environ.get("BASIN_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        for panel in PANELS:
            shutil.copyfile(output_dir / f"console-{panel}.png", DOCS / f"{panel}.png")


def test_console_charts_a_tpch_answer_and_draws_its_lineage_as_an_analyst_would(tmp_path, output_dir):
    """Charts: a TPC-H answer drawn as bars (chosen for its columns), a line and points, each
    mark checked against the API's answer; a monthly answer as a line; SVG and PNG saved; the
    chart kept with the query in the history; nothing offered for an answer of words."""
    home = tmp_path / "tpch"
    demo = subprocess.run([BASIN, "demo", "--dir", str(home), "--scale", "0.01"], capture_output=True, text=True,
                          timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    lakehouse = Basin(home)
    reader = lakehouse("token", "create", "--role", "reader", "--name", "analyst").strip()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    base, proc = start_server(lakehouse)
    try:
        out = subprocess.run(["node", str(DRIVER.parent / "chart.cjs"), base + "/", str(output_dir), str(downloads), reader],
                             capture_output=True, text=True, timeout=240, env={**os.environ, "BASIN_NODE_MODULES": MODULES})
        assert out.returncode == 0, out.stderr
        by_nation = send("POST", f"{base}/api/v1/query", reader, {"sql": CHART_BY_NATION})[1]
        by_month = send("POST", f"{base}/api/v1/query", reader, {"sql": CHART_BY_MONTH})[1]
        lineage = send("GET", f"{base}/api/v1/lineage?table=analytics.revenue_by_nation_year&depth=3", reader)[1]
        run = send("GET", f"{base}/api/v1/runs", reader)[1][0]
    finally:
        proc.kill()
        proc.wait()
    seen = json.loads(out.stdout)
    assert seen["elsewhere"] == []

    # Bars chosen for a label and two numbers; table shown first; scatter offered (two numbers).
    assert [(v[0], v[1], v[2]) for v in seen["first_view"]] == [
        ("table", False, True), ("bar", False, False), ("line", False, False), ("scatter", False, False)]
    assert seen["first_view"][1][3] == "Bar ✓"
    # One bar per row and series, standing for exactly the API's values, taller for more.
    nations = [row["nation"] for row in by_nation["rows"]]
    expected = [(row["nation"], series, str(row[series])) for series in ("total", "orders") for row in by_nation["rows"]]
    assert sorted((b[0], b[1], b[2]) for b in seen["bars"]) == sorted(expected), seen["bars"]
    totals = [b for b in seen["bars"] if b[1] == "total"]
    heights = {b[0]: b[3] for b in totals}
    assert [heights[n] for n in nations] == sorted(heights.values(), reverse=True), heights
    assert seen["bar_label"] == "bar chart of total, orders by nation"
    assert seen["lines"] == [8, 8] and seen["points"] == 8
    assert seen["saved"] == ["chart.svg", "chart.png"]
    assert (downloads / "chart.svg").read_text().startswith("<svg")
    assert (downloads / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Months: a time label, so a line is the choice; one point per month of the answer.
    assert seen["month_view"][2][3] == "Line ✓" and seen["month_view"][3][1] is True  # no scatter: one number
    assert seen["month_points"] == [by_month["row_count"]] and seen["month_marks"] == by_month["row_count"]
    # Words only: no chart.
    assert [v[1] for v in seen["nothing_to_chart"]] == [False, True, True, True]
    # The history says which chart a query was seen as, and shows it so when run again.
    assert [h.endswith("chart") for h in seen["history"]] == [False, True, True], seen["history"]
    assert seen["again"] == 16

    # Lineage: the nodes and edges the table page draws are the API's, and the pipeline's
    # inputs are on it; a click on one opens its table.
    assert sorted(seen["lineage_nodes"]) == sorted(n["id"] for n in lineage["nodes"])
    assert sorted(map(tuple, seen["lineage_edges"])) == sorted((e["from"], e["to"]) for e in lineage["edges"])
    assert ["table:tpch.orders", "model:tpch_revenue.revenue_by_nation_year"] in seen["lineage_edges"], seen["lineage_edges"]
    assert any(f.startswith("import:") and t == "table:tpch.orders" for f, t in seen["lineage_edges"])
    assert seen["lineage_clicked"].startswith("tpch.orders:")

    # The run's DAG: every model with its state, the tables read, an edge per input.
    assert sorted(seen["dag_models"]) == sorted([m["name"], "cached" if m["cache_hit"] else m["status"]]
                                                for m in run["models"]), seen["dag_models"]
    inputs = {i for m in run["models"] for i in m.get("inputs", [])}
    models = {m["name"] for m in run["models"]}
    assert sorted(seen["dag_inputs"]) == sorted(inputs - models) and "tpch.orders" in seen["dag_inputs"]
    assert sorted(seen["dag_edges"]) == sorted([i, m["name"]] for m in run["models"] for i in m.get("inputs", []))
    assert ["line_revenue", "revenue_by_nation_year"] in seen["dag_edges"]
    assert "FROM line_revenue r" in seen["dag_code"] and seen["dag_open"] == "Open analytics.revenue_by_nation_year"
    if os.environ.get("BASIN_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(output_dir / "console-chart.png", DOCS / "chart.png")
        shutil.copyfile(output_dir / "console-lineage.png", DOCS / "lineage.png")
        shutil.copyfile(output_dir / "console-run.png", DOCS / "run.png")


def test_console_reviews_approve_and_merge_as_a_second_person_would(orders, output_dir, tmp_path):
    """Protected main (a check, one approval): ana opens a review of dev over the API; bo,
    in the console, sees its changes and passing check, approves and merges it; a review of a
    branch with a negative amount shows the failing check and its rows, and cannot merge."""
    lakehouse = orders
    (tmp_path / "refund.csv").write_text("id,amount\n4,-1.00\n")
    lakehouse("branch", "create", "bad")
    lakehouse("import", str(tmp_path / "refund.csv"), "--table", "sales.orders", "--branch", "bad")
    (lakehouse.home / "basin.toml").write_text(
        '[[branches.protect]]\npattern = "main"\nchecks = ["no_negative_amounts"]\napprovals = 1\n\n'
        '[checks.no_negative_amounts]\nsql = "SELECT * FROM sales.orders WHERE amount < 0"\n')
    ana = lakehouse("token", "create", "--role", "writer", "--name", "ana").strip()
    bo = lakehouse("token", "create", "--role", "writer", "--name", "bo").strip()
    base, proc = start_server(lakehouse)
    try:
        status, review = send("POST", f"{base}/api/v1/reviews", ana, {"source": "dev", "title": "three orders"})
        assert status == 201, review
        out = subprocess.run(["node", str(DRIVER.with_name("review.cjs")), base + "/", str(output_dir), bo],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "BASIN_NODE_MODULES": MODULES})
        assert out.returncode == 0, out.stderr
    finally:
        proc.kill()
        proc.wait()
    seen = json.loads(out.stdout)
    assert seen["elsewhere"] == []
    assert seen["list"] == [f"#{review['id']} open dev → mainthree orders"], seen["list"]
    assert seen["heading"] == f"Review #{review['id']}: three orders open"
    assert seen["facts"][:2] == ["dev → main", "ana"] and seen["facts"][4] == "0 of 1 needed", seen["facts"]
    assert [r[:4] for r in seen["changes"]] == [["sales.orders", "table", "changed", "+1"]]
    assert [r[:3] for r in seen["checks"]] == [["no_negative_amounts", "passed", "0"]]
    assert seen["merge_before"] == [True, "needs 1 more approval"]
    assert seen["approved"][4].startswith("1 of 1 needed (bo at "), seen["approved"]

    # Merged by bo through the console, as one commit on main that names the review's branch.
    head = lakehouse.json("log", "main", "-n", "1")[0]
    assert (head["author"], head["door"]) == ("bo", "console"), head
    assert head["merge_parent"] is not None
    assert seen["merged"][-1] == head["id"][:12] and "bo" in seen["merged"]
    assert lakehouse.json("query", "SELECT count(*) AS n FROM sales.orders")[0]["n"] == 3

    assert [r[:3] for r in seen["bad_checks"]] == [["no_negative_amounts", "failed", "1"]]
    assert seen["bad_merge"] is True and seen["bad_why"] == "failing checks: no_negative_amounts"
    assert any("-1.00" in block for block in seen["bad_rows"]), seen["bad_rows"]
    assert (output_dir / "console-review.png").stat().st_size > 10_000
