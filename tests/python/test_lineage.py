"""Lineage (`basin lineage`, `/api/v1/lineage`, the console's table page): a lakehouse with an
import, a triggered function writing a table and a two-model pipeline run on a branch answers
upstream and downstream exactly, differently on two branches, through a token's grants, and
as a Graphviz graph. (A CDC source's lineage is checked in test_cdc_postgres.py.)"""

import json

from conftest import send, start_server

FUNCTION = '''
import basin
import pyarrow as pa


@basin.python("3.11", timeout="10s")
@basin.http("/hooks/orders", to="raw.hooked")
def hooked(event, context):
    return pa.table({"id": [event["id"]], "amount": [event["amount"]]})
'''


def edges(graph):
    return sorted((e["from"], e["to"]) for e in graph["edges"])


def test_lineage_of_an_import_a_function_and_a_pipeline_on_two_branches(lakehouse, tmp_path):
    (tmp_path / "orders.csv").write_text("id,amount\n1,10.50\n2,3.25\n3,7.00\n")
    lakehouse("import", str(tmp_path / "orders.csv"), "--table", "sales.orders")
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "hooks.py").write_text(FUNCTION)
    lakehouse("deploy", str(functions))
    base, server = start_server(lakehouse, "--no-auth")
    try:
        status, answer = send("POST", f"{base}/hooks/orders", body={"id": 9, "amount": 1.0})
        assert status == 200 and "commit" in answer, answer
    finally:
        server.kill()
        server.wait()

    # Two models on dev: daily reads sales.orders, big reads daily.
    lakehouse("branch", "create", "dev")
    project = tmp_path / "project"
    project.mkdir()
    (project / "basin.toml").write_text('[project]\nname = "shop"\nnamespace = "analytics"\n')
    (project / "daily.sql").write_text("SELECT id, amount FROM sales.orders\n")
    (project / "big.sql").write_text("SELECT id FROM daily WHERE amount > 5\n")
    lakehouse("run", str(project), "--branch", "dev")

    chain = [("import:orders.csv", "table:sales.orders"),
             ("model:shop.big", "table:analytics.big"),
             ("model:shop.daily", "table:analytics.daily"),
             ("table:analytics.daily", "model:shop.big"),
             ("table:sales.orders", "model:shop.daily")]
    upstream = lakehouse.json("lineage", "analytics.big", "--ref", "dev", "--upstream")
    assert edges(upstream) == sorted(chain), upstream
    assert {n["id"]: n["kind"] for n in upstream["nodes"]}["model:shop.daily"] == "model"
    # Each edge names the commit that made it: the model's commit on its run branch.
    model_commit = next(e["commit"] for e in upstream["edges"] if e["from"] == "model:shop.big")
    assert any(c["id"] == model_commit and "model big" in c["message"]
               for c in lakehouse.json("log", "--graph", "--runs", "-n", "100")), model_commit

    downstream = lakehouse.json("lineage", "sales.orders", "--ref", "dev", "--downstream")
    assert edges(downstream) == sorted(chain[1:]), downstream
    one_deep = lakehouse.json("lineage", "sales.orders", "--ref", "dev", "--downstream", "--depth", "1")
    assert edges(one_deep) == [("model:shop.daily", "table:analytics.daily"),
                               ("table:sales.orders", "model:shop.daily")], one_deep

    # main has neither model: the same table's lineage there is its import alone.
    on_main = lakehouse.json("lineage", "sales.orders", "--ref", "main")
    assert edges(on_main) == [("import:orders.csv", "table:sales.orders")], on_main
    hooked = lakehouse.json("lineage", "raw.hooked", "--ref", "main")
    assert edges(hooked) == [("function:hooked", "table:raw.hooked")], hooked
    missing = lakehouse.run("lineage", "analytics.big", "--ref", "main", check=False)
    assert missing.returncode != 0 and "does not exist on `main`" in missing.stderr and "hint:" in missing.stderr

    dot = lakehouse("lineage", "analytics.big", "--ref", "dev", "--format", "dot")
    assert dot.startswith("digraph lineage {") and '"table:sales.orders" -> "model:shop.daily"' in dot, dot
    assert '"table:analytics.big" [shape=box, label="analytics.big", style=bold]' in dot, dot
    people = lakehouse("lineage", "analytics.big", "--ref", "dev")
    assert "model shop.daily  ->  analytics.daily" in people, people

    # Through a token's grants: a table it may not read is not on its lineage.
    analyst = lakehouse("token", "create", "--name", "analyst", "--grant", "read:analytics.*").strip()
    base, server = start_server(lakehouse)
    try:
        status, seen = send("GET", f"{base}/api/v1/lineage?table=analytics.big&ref=dev&direction=upstream", analyst)
        assert status == 200, seen
        assert edges(seen) == sorted([("model:shop.big", "table:analytics.big"),
                                      ("model:shop.daily", "table:analytics.daily"),
                                      ("table:analytics.daily", "model:shop.big")]), seen
        status, refused = send("GET", f"{base}/api/v1/lineage?table=sales.orders&ref=dev", analyst)
        assert status == 404, refused
        status, bad = send("GET", f"{base}/api/v1/lineage?table=analytics.big&direction=sideways", analyst)
        assert status == 400, bad
    finally:
        server.kill()
        server.wait()
