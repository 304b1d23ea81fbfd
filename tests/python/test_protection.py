"""Protected branches against real clients: PyIceberg over the Iceberg REST catalog cannot
append to a protected `main` (ForbiddenError) and nothing lands; on another branch it can, and
the commit names the token and the door; a review merges the branch once approved."""

import json

import pyarrow as pa
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import ForbiddenError

from conftest import send, start_server

PROTECTED = """
[[branches.protect]]
pattern = "main"
checks = ["positive_amounts"]
approvals = 1

[checks.positive_amounts]
sql = "SELECT * FROM sales.orders WHERE amount <= 0"
"""


@pytest.fixture
def protected(lakehouse, tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text("id,amount\n1,10\n2,3\n")
    lakehouse("import", str(orders), "--table", "sales.orders")
    lakehouse("branch", "create", "dev")
    (lakehouse.home / "basin.toml").write_text(PROTECTED)
    tokens = {
        name: lakehouse("token", "create", "--role", "writer", "--name", name).strip()
        for name in ("etl", "lead")
    }
    base, proc = start_server(lakehouse)
    yield base, tokens
    proc.kill()
    proc.wait()


def rows(ids, amounts):
    return pa.table({"id": pa.array(ids, pa.int64()), "amount": pa.array(amounts, pa.int64())})


def test_pyiceberg_cannot_append_to_a_protected_branch_but_a_review_merges(lakehouse, protected):
    base, tokens = protected
    main = RestCatalog("basin", uri=base, warehouse="main", token=tokens["etl"])
    table = main.load_table("sales.orders")
    with pytest.raises(ForbiddenError, match="protected"):
        table.append(rows([3], [1]))
    count = lambda at: lakehouse.json("query", "SELECT count(*) AS n FROM sales.orders", "--ref", at)[0]["n"]
    assert count("main") == 2

    dev = RestCatalog("basin", uri=base, warehouse="dev", token=tokens["etl"])
    dev.load_table("sales.orders").append(rows([3], [1]))
    head = lakehouse.json("log", "dev", "-n", "1")[0]
    assert (head["author"], head["door"]) == ("etl", "iceberg-rest")

    # A review over HTTP: its author cannot approve it, another token can, and it merges.
    status, review = send("POST", f"{base}/api/v1/reviews", tokens["etl"], {"source": "dev", "into": "main"})
    assert status == 201, review
    number = review["id"]
    status, refused = send("POST", f"{base}/api/v1/reviews/{number}/approve", tokens["etl"], {})
    assert status == 403 and "cannot approve" in refused["error"]["message"], refused
    status, _ = send("POST", f"{base}/api/v1/reviews/{number}/approve", tokens["lead"], {})
    assert status == 200
    status, shown = send("GET", f"{base}/api/v1/reviews/{number}", tokens["lead"])
    assert shown["approvals_valid"] == 1 and shown["checks"][0]["passed"], shown
    status, merged = send("POST", f"{base}/api/v1/reviews/{number}/merge", tokens["lead"], {})
    assert status == 200 and merged["commit"], merged
    assert count("main") == 3
    head = lakehouse.json("log", "main", "-n", "1")[0]
    assert (head["author"], head["door"]) == ("lead", "api")
    assert json.dumps(head).count("merge dev@") == 1, head
