"""`basin mcp` through the official Python MCP client over stdio: the tool list, each tool's
happy path, an agent's branch work (a branch, a file imported into it) invisible on `main`
until a person merges it, an import into `main` refused, a statement outside the SQL policy
refused, and the answer capped."""

import asyncio
import json
import os

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from conftest import BASIN


def session_run(home, steps):
    """Runs `steps(session)` against `basin --home HOME mcp`."""
    async def go():
        params = StdioServerParameters(command=BASIN, args=["--home", str(home), "mcp"],
                                       env={**os.environ}, cwd=str(home))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await steps(session)
    return asyncio.run(go())


def text(result) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def test_an_agent_reads_and_works_on_its_own_branch(orders):
    async def steps(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"list_tables", "describe_table", "query", "log", "diff", "create_branch", "import_file"}
        assert all("changes nothing" in t.description or "Writes" in t.description for t in tools.values())
        assert tools["query"].input_schema["required"] == ["sql"]

        listed = await session.call_tool("list_tables", {})
        assert not listed.is_error and "sales.orders" in text(listed), text(listed)
        described = json.loads(text(await session.call_tool("describe_table", {"table": "sales.orders"})))
        assert described["rows"] == 2 and [c["name"] for c in described["columns"]] == ["id", "amount"]

        on_dev = await session.call_tool("query", {"sql": "SELECT id FROM sales.orders ORDER BY id", "ref": "dev"})
        assert text(on_dev).splitlines() == ["id", "1", "2", "3", "(3 rows; 3 shown)"], text(on_dev)
        capped = await session.call_tool("query", {"sql": "SELECT * FROM generate_series(1, 5000)", "max_rows": 10})
        assert text(capped).endswith("(5000 rows; 10 shown)") and len(text(capped).splitlines()) == 12

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
        assert onto_main.is_error and "not `main`" in text(onto_main), text(onto_main)
        imported = await session.call_tool("import_file", {"path": late, "table": "sales.orders", "branch": "agent/try"})
        assert not imported.is_error and "imported 2 rows" in text(imported), text(imported)
        counted = await session.call_tool("query", {"sql": "SELECT count(*) AS n FROM sales.orders", "ref": "agent/try"})
        assert text(counted).splitlines()[1] == "5", text(counted)
        return True

    assert session_run(orders.home, steps)
    # What the agent did is a branch; main is as it was until a person merges.
    assert orders.json("query", "SELECT count(*) AS n FROM sales.orders", "--ref", "main") == [{"n": 2}]
    assert "agent/try" in [b["name"] for b in orders.json("branch", "ls")]
