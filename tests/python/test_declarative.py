"""The lakehouse as code (`basin plan`, `basin apply`, `basin export`): every object kind is
created, changed in place, replaced only when asked, destroyed when no longer declared; a
change by hand shows as drift; an export plans to no change; an apply that fails leaves the
lakehouse as it was."""

import json

BASE = '''
[namespaces.sales]
properties = { owner = "finance" }

[tables."sales.orders"]
columns = [
  { name = "id", type = "long", required = true },
  { name = "amount", type = "decimal(12, 2)" },
  { name = "region", type = "string" },
]
partition = ["region"]
sort = ["id"]
properties = { "commit.retry.num-retries" = "4" }

[branches.dev]

[tags.baseline]
at = "main"

[tokens.ci]
role = "writer"
'''

ORDERS = "id,amount,region\n1,10.50,eu\n2,3.25,us\n3,7.00,eu\n"


def plan(lakehouse, *args):
    return lakehouse.json("plan", *args)


def changes(p):
    return sorted((c["action"], c["kind"], c["name"]) for c in p["changes"])


def columns(lakehouse, table):
    shown = lakehouse.json("table", "show", table)
    return [(c["name"], c["type"], c["required"]) for c in shown["columns"]]


def count(lakehouse, table, ref="main"):
    return lakehouse.json("query", f"SELECT count(*) AS n FROM {table}", "--ref", ref)[0]["n"]


def test_every_kind_created_updated_replaced_destroyed_with_drift(lakehouse, tmp_path):
    toml = lakehouse.home / "basin.toml"
    toml.write_text(BASE)

    first = plan(lakehouse)
    assert changes(first) == [("create", "branch", "dev"), ("create", "namespace", "sales"),
                              ("create", "table", "sales.orders"), ("create", "tag", "baseline"),
                              ("create", "token", "ci")], first
    text = lakehouse("plan")
    assert "Plan: 5 to create, 0 to update, 0 to replace, 0 to destroy." in text, text
    assert "+   table sales.orders" in text, text

    applied = lakehouse.run("apply", "--auto-approve")
    secret = [line for line in applied.stdout.splitlines() if line.startswith("token ci (")]
    assert len(secret) == 1 and secret[0].split(": ")[1].startswith("basin_"), applied.stdout
    # One commit on main holds the namespace and the table.
    head = lakehouse.json("log", "--limit", "1")[0]
    assert "+ namespace sales" in head["message"] and "+ table sales.orders" in head["message"], head
    assert columns(lakehouse, "sales.orders") == [("id", "long", True),
                                                  ("amount", "decimal(12, 2)", False),
                                                  ("region", "string", False)]
    shown = lakehouse.json("table", "show", "sales.orders")
    assert len(shown["partition_spec"]) == 1 and "region" in shown["partition_spec"][0], shown
    refs = {r["name"]: r["kind"] for r in lakehouse.json("branch", "ls")}
    assert "dev" in refs, refs
    assert "baseline" in {t["name"] for t in lakehouse.json("tag", "ls")}
    assert [t["role"] for t in lakehouse.json("token", "ls") if t["name"] == "ci"] == ["writer"]
    # As declared now: nothing to do, and the secret is never shown again.
    again = lakehouse("plan")
    assert again.strip() == "No changes.", again
    assert "basin_" not in lakehouse("export")

    (tmp_path / "orders.csv").write_text(ORDERS)
    lakehouse("import", str(tmp_path / "orders.csv"), "--table", "sales.orders", "--mode", "append")
    assert count(lakehouse, "sales.orders") == 3

    # In place: a new optional column, a wider decimal, a property, a new partition field.
    toml.write_text(BASE.replace(
        '{ name = "region", type = "string" },',
        '{ name = "region", type = "string" },\n  { name = "note", type = "string" },').replace(
        "decimal(12, 2)", "decimal(14, 2)").replace('"4"', '"6"').replace(
        'partition = ["region"]', 'partition = ["region", "bucket(4, id)"]'))
    update = plan(lakehouse)
    assert changes(update) == [("update", "table", "sales.orders")], update
    reasons = update["changes"][0]["reasons"]
    assert "+ column note: string" in reasons, reasons
    assert "~ column amount: decimal(12, 2) -> decimal(14, 2)" in reasons, reasons
    assert 'property commit.retry.num-retries: "4" -> "6"' in reasons, reasons
    assert any(r.startswith("partition [region] -> [region, bucket(4, id)]") for r in reasons), reasons
    lakehouse("apply", "--auto-approve")
    assert count(lakehouse, "sales.orders") == 3
    assert columns(lakehouse, "sales.orders")[1:] == [("amount", "decimal(14, 2)", False),
                                                      ("region", "string", False),
                                                      ("note", "string", False)]
    assert lakehouse("plan").strip() == "No changes."
    updated = toml.read_text()

    # A replace is refused without --allow-replace, says what it loses, and changes nothing.
    toml.write_text(updated.replace('{ name = "id", type = "long", required = true }',
                                    '{ name = "id", type = "string", required = true }'))
    replace = plan(lakehouse)
    assert changes(replace) == [("replace", "table", "sales.orders")], replace
    assert replace["changes"][0]["loses"].startswith("its 3 rows on `main`"), replace
    head = lakehouse.json("log", "--limit", "1")[0]["id"]
    refused = lakehouse.run("apply", "--auto-approve", check=False)
    assert refused.returncode != 0, refused.stdout
    assert "replaces table sales.orders" in refused.stderr and "--allow-replace" in refused.stderr, refused.stderr
    assert lakehouse.json("log", "--limit", "1")[0]["id"] == head
    assert count(lakehouse, "sales.orders") == 3
    lakehouse("apply", "--auto-approve", "--allow-replace")
    assert count(lakehouse, "sales.orders") == 0
    assert columns(lakehouse, "sales.orders")[0] == ("id", "string", True)
    # Time travel still has the rows the replace dropped.
    assert count(lakehouse, "sales.orders", f"main@{head}") == 3

    # Drift: the branch and the table dropped by hand since the last apply.
    lakehouse("branch", "rm", "dev")
    lakehouse("table", "rm", "sales.orders")
    drift = plan(lakehouse)
    assert changes(drift) == [("create", "branch", "dev"), ("create", "table", "sales.orders")], drift
    assert all(c["drift"] == "deleted since the last apply" for c in drift["changes"]), drift
    assert "drift: deleted since the last apply" in lakehouse("plan")
    lakehouse("apply", "--auto-approve")

    # Destroy: what the last apply made and the file no longer declares.
    toml.write_text(toml.read_text().replace("[branches.dev]\n", "").replace(
        '[tokens.ci]\nrole = "writer"\n', ""))
    destroy = plan(lakehouse)
    assert changes(destroy) == [("destroy", "branch", "dev"), ("destroy", "token", "ci")], destroy
    lakehouse("apply", "--auto-approve")
    assert "dev" not in {r["name"] for r in lakehouse.json("branch", "ls")}
    assert "ci" not in {t["name"] for t in lakehouse.json("token", "ls")}
    assert lakehouse("plan").strip() == "No changes."


def test_export_plans_to_no_change(lakehouse, tmp_path):
    (tmp_path / "orders.csv").write_text(ORDERS)
    lakehouse("import", str(tmp_path / "orders.csv"), "--table", "sales.orders")
    lakehouse("namespace", "create", "reports")
    lakehouse("branch", "create", "dev")
    lakehouse("tag", "create", "v1")
    lakehouse("token", "create", "--name", "analyst", "--grant", "read:sales.*")
    exported = tmp_path / "lakehouse.toml"
    exported.write_text(lakehouse("export"))
    text = exported.read_text()
    assert '[tables."sales.orders"]' in text and "[namespaces.reports]" in text, text
    assert 'grants = ["read:sales.*@*"]' in text or 'grants = ["read:sales.*"]' in text, text
    p = plan(lakehouse, "--file", str(exported))
    assert p["changes"] == [] and "drift" not in p, p
    assert lakehouse("plan", "--file", str(exported)).strip() == "No changes."
    # Applied, the exported objects are managed: dropping one from the file destroys it.
    lakehouse("apply", "--file", str(exported), "--auto-approve")
    exported.write_text(text.replace("[namespaces.reports]\n", ""))
    assert changes(plan(lakehouse, "--file", str(exported))) == [("destroy", "namespace", "reports")]


def test_a_failing_apply_leaves_the_lakehouse_as_it_was(lakehouse):
    toml = lakehouse.home / "basin.toml"
    toml.write_text(BASE)
    lakehouse("apply", "--auto-approve")
    head = lakehouse.json("log", "--limit", "1")[0]["id"]
    # A new namespace and table, and a partition Iceberg cannot bind (a day of a number): the
    # plan is made, the commit is refused, and neither the namespace nor the table appears.
    toml.write_text(BASE.replace('partition = ["region"]', 'partition = ["day(id)"]') + '''
[namespaces.reports]

[tables."reports.daily"]
columns = [{ name = "day", type = "date" }]
''')
    p = plan(lakehouse)
    assert changes(p) == [("create", "namespace", "reports"), ("create", "table", "reports.daily"),
                          ("update", "table", "sales.orders")], p
    failed = lakehouse.run("apply", "--auto-approve", check=False)
    assert failed.returncode != 0
    assert "sales.orders" in failed.stderr, failed.stderr
    assert lakehouse.json("log", "--limit", "1")[0]["id"] == head
    assert "reports" not in lakehouse.json("namespace", "ls")
    assert lakehouse.json("table", "show", "sales.orders")["partition_spec"] != []
    assert changes(plan(lakehouse)) == changes(p)


def test_bad_declarations_name_the_section(lakehouse):
    toml = lakehouse.home / "basin.toml"
    toml.write_text('[namespaces.sales]\n[tables."sales.orders"]\ncolumns = [{ name = "x", type = "money" }]\n')
    bad = lakehouse.run("plan", check=False)
    assert bad.returncode != 0
    assert "table `sales.orders`, column `x`" in bad.stderr and "hint:" in bad.stderr, bad.stderr
    toml.write_text('[tables."sales.orders"]\ncolumns = [{ name = "x", type = "long" }]\n')
    bad = lakehouse.run("plan", check=False)
    assert "namespace `sales` is neither declared nor on `main`" in bad.stderr, bad.stderr
    assert "[namespaces.sales]" in bad.stderr
    toml.write_text('[tokens.ci]\nrole = "owner"\n')
    bad = lakehouse.run("plan", check=False)
    assert '[tokens."ci"]' in bad.stderr and "`owner` is not a role" in bad.stderr, bad.stderr
    toml.write_text('[tables."sales.orders"]\ncolums = []\n')
    bad = lakehouse.run("plan", check=False)
    assert "colums" in bad.stderr and "basin.toml" in bad.stderr, bad.stderr
    # Asked with nobody to answer (stdin is not a terminal), apply applies nothing.
    toml.write_text('[namespaces.sales]\n')
    unasked = lakehouse.run("apply", check=False)
    assert unasked.returncode != 0 and "--auto-approve" in unasked.stderr, unasked.stderr
    assert "+   namespace sales" in unasked.stdout, unasked.stdout
    # Nothing was made by any of them.
    assert lakehouse.json("namespace", "ls") == []
    assert json.loads(lakehouse("token", "ls", "--format", "json")) == []


FUNCTION = '''
import basin
import pyarrow as pa


@basin.python("3.11", timeout="10s")
@basin.http("/hooks/orders", to="sales.hooked")
def hooked(event, context):
    return pa.table({"id": [event["id"]]})
'''


def test_namespaces_tags_tokens_and_functions_change_and_drift(lakehouse, tmp_path):
    toml = lakehouse.home / "basin.toml"
    (lakehouse.home / "functions").mkdir()
    (lakehouse.home / "functions" / "hooks.py").write_text(FUNCTION)
    toml.write_text(BASE + '\n[deploy]\nfunctions = "functions"\n')
    first = plan(lakehouse)
    assert ("create", "function", "hooked") in changes(first), first
    lakehouse("apply", "--auto-approve")
    assert [f["name"] for f in lakehouse.json("functions", "ls")] == ["hooked"]
    old_token = [t["id"] for t in lakehouse.json("token", "ls") if t["name"] == "ci"]
    tagged = next(t for t in lakehouse.json("tag", "ls") if t["name"] == "baseline")

    # A column added by hand (an import that may add columns) is drift, and the plan drops it.
    (tmp_path / "wide.csv").write_text("id,amount,region,extra\n9,1.00,eu,x\n")
    lakehouse("import", str(tmp_path / "wide.csv"), "--table", "sales.orders", "--allow-new-columns")
    drift = plan(lakehouse)
    assert changes(drift) == [("update", "table", "sales.orders")], drift
    change = drift["changes"][0]
    assert change["drift"] == "its columns changed since the last apply", change
    assert "- column extra (earlier snapshots keep its values)" in change["reasons"], change

    # A namespace's property changes in place; a tag at another commit and a token with other
    # access are replaces; a function no longer in the folder is destroyed.
    head = lakehouse.json("log", "--limit", "1")[0]["id"]
    (lakehouse.home / "functions" / "hooks.py").unlink()
    toml.write_text(BASE.replace('owner = "finance"', 'owner = "sales"').replace(
        'at = "main"', f'at = "{head}"').replace('role = "writer"', 'role = "reader"') +
        '\n[deploy]\nfunctions = "functions"\n')
    p = plan(lakehouse)
    assert changes(p) == [("destroy", "function", "hooked"), ("replace", "tag", "baseline"),
                          ("replace", "token", "ci"), ("update", "namespace", "sales"),
                          ("update", "table", "sales.orders")], p
    by_kind = {c["kind"]: c for c in p["changes"]}
    assert by_kind["namespace"]["reasons"] == ['property owner: "finance" -> "sales"'], by_kind
    assert by_kind["token"]["reasons"] == ["role writer -> role reader"], by_kind
    assert "stops working" in by_kind["token"]["loses"], by_kind
    refused = lakehouse.run("apply", "--auto-approve", check=False)
    assert refused.returncode != 0 and "replaces tag baseline" in refused.stderr, refused.stderr
    assert [t["id"] for t in lakehouse.json("token", "ls") if t["name"] == "ci"] == old_token
    applied = lakehouse("apply", "--auto-approve", "--allow-replace")
    assert "token ci (" in applied, applied
    tokens = [t for t in lakehouse.json("token", "ls") if t["name"] == "ci"]
    assert [t["role"] for t in tokens] == ["reader"] and tokens[0]["id"] != old_token[0], tokens
    retagged = next(t for t in lakehouse.json("tag", "ls") if t["name"] == "baseline")
    assert retagged["head"] == head != tagged["head"], (retagged, tagged)
    assert lakehouse.json("functions", "ls") == []
    assert "extra" not in [c[0] for c in columns(lakehouse, "sales.orders")]
    assert lakehouse("plan").strip() == "No changes."


def test_plan_apply_and_export_over_remote(lakehouse, tmp_path):
    import subprocess

    from conftest import BASIN, start_server

    admin = lakehouse("token", "create", "--role", "admin", "--name", "ops").strip()
    reader = lakehouse("token", "create", "--role", "reader", "--name", "viewer").strip()
    base, server = start_server(lakehouse)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "basin.toml").write_text(BASE)

    def remote(*args, token=admin):
        env = {**lakehouse.env, "BASIN_REMOTE": base, "BASIN_TOKEN": token}
        env.pop("BASIN_HOME", None)
        return subprocess.run([BASIN, *args], capture_output=True, text=True, env=env, cwd=elsewhere)

    try:
        planned = remote("plan", "--format", "json")
        assert planned.returncode == 0, planned.stderr
        assert changes(json.loads(planned.stdout)) == changes(plan_of(lakehouse, elsewhere / "basin.toml"))
        refused = remote("plan", token=reader)
        assert refused.returncode != 0 and "admin" in refused.stderr, refused.stderr
        applied = remote("apply", "--auto-approve")
        assert applied.returncode == 0, applied.stderr
        assert "token ci (" in applied.stdout, applied.stdout
        assert [t["role"] for t in lakehouse.json("token", "ls") if t["name"] == "ci"] == ["writer"]
        assert remote("plan").stdout.strip() == "No changes."
        # The server's export is the local one (but for the time it was written).
        body = lambda text: [line for line in text.splitlines() if not line.startswith("#")]
        assert body(remote("export").stdout) == body(lakehouse("export"))
        # A folder of functions is on the caller's machine: the server says it cannot read it.
        (elsewhere / "basin.toml").write_text(BASE + '\n[deploy]\nfunctions = "functions"\n')
        deploy = remote("plan")
        assert deploy.returncode != 0 and "[deploy]" in deploy.stderr and "hint:" in deploy.stderr, deploy.stderr
    finally:
        server.kill()
        server.wait()


def plan_of(lakehouse, file):
    return lakehouse.json("plan", "--file", str(file))
