"""Basin's MCP door through the official Python MCP client: over stdio (`basin mcp`) and over
streamable HTTP (`/mcp` on `basin serve`, with tokens). The tool list, each tool's happy path,
the resources, an agent's branch work (a branch, an import, a pipeline run) invisible on
`main` until a person merges the review it proposed, writes to `main` refused, a reader's
token refused every write, a token's grants applied, a statement outside the SQL policy
refused, and the answer capped."""

import asyncio
import json
import os
import subprocess

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from conftest import BASIN, metric, send, start_server

TOOLS = {"list_tables", "describe_table", "query", "list_refs", "log", "diff",
         "create_branch", "import_file", "run_pipeline", "propose_merge"}
WRITES = {"create_branch", "import_file", "run_pipeline", "propose_merge"}


def over_stdio(home, steps):
    """Runs `steps(session)` against `basin --home HOME mcp`."""
    return stdio_session(["--home", str(home), "mcp"], str(home), steps)


def over_bridge(base, token, steps):
    """Runs `steps(session)` against `basin --remote BASE --token TOKEN mcp`: stdio bridged
    to BASE/mcp, from a folder that holds no lakehouse."""
    return stdio_session(["--remote", base, "--token", token, "mcp"], "/", steps)


def stdio_session(args, cwd, steps):
    """Runs `steps(session)` against `basin ARGS` over stdio, started in `cwd`."""
    async def go():
        params = StdioServerParameters(command=BASIN, args=args, env={**os.environ}, cwd=cwd)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await steps(session)
    return asyncio.run(go())


def over_http(base, token, steps):
    """Runs `steps(session)` against BASE/mcp with a bearer token."""
    async def go():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(headers=headers, timeout=120) as client:
            async with streamable_http_client(f"{base}/mcp", http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await steps(session)
    return asyncio.run(go())


def text(result) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def pipeline_files():
    """A project of one SQL model reading sales.orders."""
    return {"basin.toml": '[project]\nname = "totals"\nnamespace = "reports"\n',
            "totals.sql": "SELECT count(*) AS orders, sum(amount) AS total FROM sales.orders\n"}


def test_an_agent_reads_and_works_on_its_own_branch_over_stdio(orders):
    async def steps(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        assert all(("changes nothing" in t.description) != (t.name in WRITES) for t in tools.values())
        assert all(t.annotations.read_only_hint == (t.name not in WRITES) for t in tools.values())
        assert tools["query"].input_schema["required"] == ["sql"]

        listed = await session.call_tool("list_tables", {})
        assert not listed.is_error and "namespace sales\n  sales.orders (id " in text(listed), text(listed)
        described = json.loads(text(await session.call_tool("describe_table", {"table": "sales.orders"})))
        assert described["rows"] == 2 and [c["name"] for c in described["columns"]] == ["id", "amount"]
        assert [c["message"] for c in described["commits"]][0].startswith("import"), described["commits"]
        refs = text(await session.call_tool("list_refs", {}))
        assert "branch dev " in refs and "branch main " in refs, refs

        on_dev = await session.call_tool("query", {"sql": "SELECT id FROM sales.orders ORDER BY id", "ref": "dev"})
        assert text(on_dev).splitlines() == ["id", "1", "2", "3", "(3 rows)"], text(on_dev)
        capped = await session.call_tool("query", {"sql": "SELECT * FROM generate_series(1, 5000)", "max_rows": 10})
        lines = text(capped).splitlines()
        assert len(lines) == 12 and lines[-1].startswith("(10 rows shown; the answer has more"), lines

        refused = await session.call_tool("query", {"sql": "DROP TABLE sales.orders"})
        assert refused.is_error and "not allowed" in text(refused), text(refused)
        missing = await session.call_tool("describe_table", {"table": "sales.nope"})
        assert missing.is_error and "hint:" in text(missing), text(missing)

        made = await session.call_tool("create_branch", {"name": "agent/try", "from": "dev"})
        assert not made.is_error and "agent/try" in text(made)
        diff = json.loads(text(await session.call_tool("diff", {"from": "main", "to": "agent/try"})))
        assert [d["key"] for d in diff] == ["sales.orders"], diff
        log = text(await session.call_tool("log", {"ref": "agent/try", "limit": 5}))
        assert "sales.orders" in log

        (orders.home / "late.csv").write_text("id,amount\n9,1.00\n10,2.00\n")
        late = str(orders.home / "late.csv")
        onto_main = await session.call_tool("import_file", {"path": late, "table": "sales.orders", "branch": "main"})
        assert onto_main.is_error and "`main`" in text(onto_main), text(onto_main)
        imported = await session.call_tool("import_file", {"path": late, "table": "sales.orders", "branch": "agent/try"})
        assert not imported.is_error and "imported 2 rows" in text(imported), text(imported)
        counted = await session.call_tool("query", {"sql": "SELECT count(*) AS n FROM sales.orders", "ref": "agent/try"})
        assert text(counted).splitlines()[1] == "5", text(counted)

        ran = await session.call_tool("run_pipeline", {"files": pipeline_files(), "branch": "agent/try"})
        assert not ran.is_error and " succeeded into `agent/try`" in text(ran), text(ran)
        assert "totals (sql) ok: 1 rows -> reports.totals" in text(ran), text(ran)
        total = await session.call_tool("query", {"sql": "SELECT orders FROM reports.totals", "ref": "agent/try"})
        assert text(total).splitlines()[1] == "5", text(total)

        # Resources: docs pages and table schemas, on any ref through the template.
        uris = [str(r.uri) for r in (await session.list_resources()).resources]
        assert "basin://docs/agents" in uris and "basin://tables/main/sales.orders" in uris, uris
        templates = [t.uri_template for t in (await session.list_resource_templates()).resource_templates]
        assert "basin://tables/{ref}/{table}" in templates, templates
        schema = json.loads((await session.read_resource("basin://tables/agent/try/reports.totals")).contents[0].text)
        assert [c["name"] for c in schema["columns"]] == ["orders", "total"] and schema["rows"] == 1, schema
        docs = (await session.read_resource("basin://docs/agents")).contents[0].text
        assert docs.startswith("# AI agents"), docs[:40]
        return True

    assert over_stdio(orders.home, steps)
    # What the agent did is a branch; main is as it was until a person merges.
    assert orders.json("query", "SELECT count(*) AS n FROM sales.orders", "--ref", "main") == [{"n": 2}]
    assert "agent/try" in [b["name"] for b in orders.json("branch", "ls")]
    head = orders.json("log", "agent/try", "-n", "1")[0]
    assert head["door"] == "mcp", head


def test_an_agent_over_http_with_tokens_grants_and_a_review(orders):
    """`/mcp` on `basin serve`: the token's role and grants hold for every tool, writes go to
    the agent's branch as `content` (no server paths), and main changes only when a person
    merges the review the agent proposed."""
    (orders.home / "pay.csv").write_text("id,salary\n1,100\n")
    orders("import", str(orders.home / "pay.csv"), "--table", "hr.salaries")
    reader = orders("token", "create", "--role", "reader").strip()
    agent = orders("token", "create", "--name", "agent", "--grant", "read:sales.*,reports.*",
                   "--grant", "write:sales.*,reports.*@agent/*,run/*").strip()
    admin = orders("token", "create", "--role", "admin").strip()
    base, proc = start_server(orders)
    try:
        status, _ = send("POST", f"{base}/mcp", None, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert status == 401
        # A batch is answered whole, in memory: at most `[server] mcp_max_batch` (16) messages.
        pings = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(17)]
        status, replies = send("POST", f"{base}/mcp", reader, pings[:16])
        assert status == 200 and [r["id"] for r in replies] == list(range(16)), replies
        status, refused = send("POST", f"{base}/mcp", reader, pings)
        assert status == 400 and refused["error"]["code"] == -32600, refused
        assert "at most 16 messages (`[server] mcp_max_batch`), not 17" in refused["error"]["message"], refused
        assert metric(base, reader, r'basin_limit_hits_total\{limit="mcp_max_batch"\}') == 1

        async def as_reader(session):
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == TOOLS
            answer = await session.call_tool("query", {"sql": "SELECT sum(amount) AS s FROM sales.orders"})
            assert text(answer).splitlines() == ["s", "13.75", "(1 rows)"], text(answer)
            refused = await session.call_tool("create_branch", {"name": "agent/nope"})
            assert refused.is_error and "this token is a reader; `create_branch` needs a writer" in text(refused)
            policy = await session.call_tool("query", {"sql": "COPY (SELECT 1) TO '/tmp/x.csv'"})
            assert policy.is_error and "not allowed" in text(policy), text(policy)
            return True

        assert over_http(base, reader, as_reader)
        # The same door through `basin --remote URL mcp`, for agents that speak only stdio.
        assert over_bridge(base, reader, as_reader)
        refused = subprocess.run([BASIN, "--remote", base, "--token", "basin_nope", "mcp"], cwd="/", text=True,
                                 input='{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n', capture_output=True,
                                 timeout=60)
        reply = json.loads(refused.stdout)
        assert reply["id"] == 1 and reply["error"]["code"] == -32603, reply
        assert "token" in reply["error"]["message"], reply

        async def as_agent(session):
            # Grants: hr is not the agent's to see, by any tool.
            listed = text(await session.call_tool("list_tables", {}))
            assert "sales.orders" in listed and "hr.salaries" not in listed, listed
            hidden = await session.call_tool("query", {"sql": "SELECT * FROM hr.salaries"})
            assert hidden.is_error, text(hidden)
            made = await session.call_tool("create_branch", {"name": "agent/more", "from": "main"})
            assert not made.is_error, text(made)
            by_path = await session.call_tool("import_file", {"path": "/etc/passwd", "table": "sales.orders",
                                                              "branch": "agent/more"})
            assert by_path.is_error and "not a `path`" in text(by_path), text(by_path)
            imported = await session.call_tool("import_file", {"content": "id,amount\n7,1.25\n", "filename": "late.csv",
                                                               "table": "sales.orders", "branch": "agent/more"})
            assert not imported.is_error and "imported 1 rows" in text(imported), text(imported)
            bad = await session.call_tool("import_file", {"content": "id,amount\n8,oops\n", "filename": "bad.csv",
                                                          "table": "sales.orders", "branch": "agent/more"})
            assert bad.is_error and "bad.csv" in text(bad) and "/uploads/" not in text(bad), text(bad)
            ran = await session.call_tool("run_pipeline", {"files": pipeline_files(), "branch": "agent/more"})
            assert not ran.is_error and "succeeded" in text(ran), text(ran)
            onto_main = await session.call_tool("run_pipeline", {"files": pipeline_files(), "branch": "main"})
            assert onto_main.is_error and "`main`" in text(onto_main), text(onto_main)
            proposed = await session.call_tool("propose_merge", {"branch": "agent/more", "title": "one late order"})
            assert not proposed.is_error and "opened review #" in text(proposed), text(proposed)
            return int(text(proposed).split("#")[1].split(":")[0])

        review = over_http(base, agent, as_agent)
        # Nothing on main yet: the agent's work waits for a person.
        assert orders.json("query", "SELECT count(*) AS n FROM sales.orders", "--ref", "main") == [{"n": 2}]
        status, shown = send("GET", f"{base}/api/v1/reviews/{review}", admin)
        assert status == 200 and (shown["author"], shown["title"]) == ("agent", "one late order"), shown
        assert [d["key"] for d in shown["diff"]] == ["reports", "reports.totals", "sales.orders"], shown["diff"]
        status, merged = send("POST", f"{base}/api/v1/reviews/{review}/merge", admin, {})
        assert status == 200, merged
        assert orders.json("query", "SELECT count(*) AS n FROM sales.orders", "--ref", "main") == [{"n": 3}]
        assert orders.json("query", "SELECT orders FROM reports.totals", "--ref", "main") == [{"orders": 3}]

        # The transport: no server stream, no session to end, a protocol version it speaks.
        status, _ = send("GET", f"{base}/mcp", admin)
        assert status == 405
        status, wrong = send("POST", f"{base}/mcp", admin, {"jsonrpc": "2.0", "id": 1, "method": "nope"})
        assert status == 200 and wrong["error"]["code"] == -32601, wrong
        status, _ = send("POST", f"{base}/mcp", admin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202
    finally:
        proc.kill()
        proc.wait()
    head = orders.json("log", "agent/more", "-n", "1")[0]
    assert (head["author"], head["door"]) == ("agent", "mcp"), head
