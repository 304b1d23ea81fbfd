"""The CLI against a `basin serve` on another "machine": `--remote URL` / `BASIN_REMOTE`
with `BASIN_TOKEN`, from a folder that holds no lakehouse. The same commands print the same
answers as they do locally, errors keep their hints, and roles are enforced."""

import json
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from conftest import BASIN, metric, send, start_server, wait_for


@pytest.fixture
def remote(orders, tmp_path):
    """A served lakehouse with sales.orders, and a `basin` runner that works on it remotely
    from an empty folder, as a writer."""
    writer = orders("token", "create", "--role", "writer").strip()
    base, proc = start_server(orders)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def basin(*args, token=writer, check=True):
        env = {**orders.env, "BASIN_REMOTE": base}
        env.pop("BASIN_HOME", None)
        if token:
            env["BASIN_TOKEN"] = token
        else:
            env.pop("BASIN_TOKEN", None)
        proc = subprocess.run([BASIN, *args], capture_output=True, text=True, env=env, cwd=elsewhere)
        if check and proc.returncode != 0:
            raise AssertionError(f"basin {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    basin.base = base
    basin.writer = writer
    yield basin
    proc.kill()
    proc.wait()


def test_remote_commands_answer_like_local_ones(remote, orders, tmp_path):
    sql = "SELECT id, amount FROM sales.orders ORDER BY id"
    for args in (["query", sql, "--format", "json"], ["query", sql, "--ref", "dev", "--format", "csv"],
                 ["table", "ls", "--format", "json"], ["log", "dev", "--format", "json"],
                 ["log", "--graph"], ["log", "--graph", "--format", "json"],
                 ["branch", "ls", "--format", "json"], ["namespace", "ls", "--format", "json"]):
        assert remote(*args).stdout == orders(*args), args

    (tmp_path / "late.csv").write_text("id,amount\n4,1.00\n5,2.00\n")
    report = json.loads(remote("import", str(tmp_path / "late.csv"), "--table", "sales.orders",
                               "--branch", "dev", "--format", "json").stdout)
    assert report["rows"] == 2 and report["branch"] == "dev"

    merged = json.loads(remote("merge", "dev", "--format", "json").stdout)
    assert merged["target"] == "main" and merged["commit"]
    assert orders("query", "SELECT count(*) AS n FROM sales.orders", "--format", "csv") == "n\n5\n"

    remote("tag", "create", "v1")
    assert [t["name"] for t in json.loads(remote("tag", "ls", "--format", "json").stdout)] == ["v1"]
    remote("branch", "create", "scratch", "--from", "v1")
    remote("branch", "rm", "scratch")
    assert "scratch" not in orders("branch", "ls")

    usage = json.loads(remote("usage", "--format", "json").stdout)
    assert any(row["key"] == "sql (http)" and row["invocations"] >= 2 for row in usage)


def test_remote_errors_keep_their_hints_and_roles_hold(remote, orders, tmp_path):
    missing = remote("table", "show", "sales.nope", check=False)
    assert missing.returncode == 1
    assert "sales.nope" in missing.stderr and "hint: tables on `main`: sales.orders" in missing.stderr

    (tmp_path / "bad.csv").write_text("id,amount\n6,1.00\n7,lots\n")
    bad = remote("import", str(tmp_path / "bad.csv"), "--table", "sales.orders", check=False)
    assert bad.returncode == 1 and "bad.csv:3: column `amount`" in bad.stderr
    assert orders("query", "SELECT count(*) AS n FROM sales.orders", "--format", "csv") == "n\n2\n"

    anonymous = remote("log", token=None, check=False)
    assert anonymous.returncode == 1 and "needs an access token" in anonymous.stderr
    assert "hint:" in anonymous.stderr

    reader = orders("token", "create", "--role", "reader").strip()
    assert remote("query", "SELECT 1 AS one", "--format", "csv", token=reader).stdout == "one\n1\n"
    refused = remote("branch", "create", "nope", token=reader, check=False)
    assert refused.returncode == 1 and "token is a reader; POST /api/v1/branches needs a writer" in refused.stderr
    assert "nope" not in orders("branch", "ls")

    local_only = remote("invoke", "clean.py:f", check=False)
    assert local_only.returncode == 1 and "not over --remote" in local_only.stderr

    unreachable = subprocess.run([BASIN, "--remote", "http://127.0.0.1:9", "log"],
                                 capture_output=True, text=True)
    assert unreachable.returncode == 1 and "cannot reach http://127.0.0.1:9/" in unreachable.stderr


def test_remote_reviews_grants_and_the_audit_log(orders, tmp_path):
    """A protected main over --remote: a direct write is refused, a review opened by one token
    is approved by another and merged; grants and the audit log work the same remotely."""
    (orders.home / "basin.toml").write_text('[[branches.protect]]\npattern = "main"\napprovals = 1\n')
    admin = orders("token", "create", "--role", "admin", "--name", "ops").strip()
    ana = orders("token", "create", "--name", "ana", "--grant", "write:*").strip()
    bo = orders("token", "create", "--name", "bo", "--grant", "write:*").strip()
    base, proc = start_server(orders)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def basin(*args, token):
        env = {**orders.env, "BASIN_REMOTE": base, "BASIN_TOKEN": token}
        env.pop("BASIN_HOME", None)
        return subprocess.run([BASIN, *args], capture_output=True, text=True, env=env, cwd=elsewhere)

    try:
        (tmp_path / "late.csv").write_text("id,amount\n4,1.00\n")
        direct = basin("import", str(tmp_path / "late.csv"), "--table", "sales.orders", token=ana)
        assert direct.returncode == 1 and "protected" in direct.stderr and "hint:" in direct.stderr, direct
        done = basin("import", str(tmp_path / "late.csv"), "--table", "sales.orders", "--branch", "dev", token=ana)
        assert done.returncode == 0, done.stderr
        review = json.loads(basin("review", "open", "dev", "--into", "main", "--format", "json", token=ana).stdout)
        number = str(review["id"])
        own = basin("review", "approve", number, token=ana)
        assert own.returncode == 1 and "cannot approve" in own.stderr, own
        assert basin("review", "approve", number, token=bo).returncode == 0
        merged = basin("review", "merge", number, "--format", "json", token=bo)
        assert merged.returncode == 0, merged.stderr
        head = json.loads(basin("log", "main", "-n", "1", "--format", "json", token=bo).stdout)[0]
        assert (head["author"], head["door"]) == ("bo", "api"), head

        made = basin("token", "create", "--name", "viewer", "--grant", "read:sales.*@main", token=admin)
        assert made.returncode == 0, made.stderr
        listed = json.loads(basin("token", "ls", "--format", "json", token=admin).stdout)
        assert [t["grants"] for t in listed if t["name"] == "viewer"] == [["read:sales.*@main"]], listed
        assert basin("audit", "ls", token=ana).returncode == 1, "admins only"
        audit = json.loads(basin("audit", "ls", "--principal", "ana", "--format", "json", token=admin).stdout)
        actions = {(e["action"], e["outcome"]) for e in audit}
        assert ("commit", "refused") in actions and ("approve review", "refused") in actions, audit
    finally:
        proc.kill()
        proc.wait()


COPY = '''
import basin
import pyarrow as pa


@basin.http("/hooks/copy", to="sandbox.copies")
def copy_rows(event, context):
    return pa.table({"id": pa.array([event["id"]], pa.int64())})
'''


def test_a_token_deploys_its_own_functions_which_write_with_its_grants(remote, orders, tmp_path):
    """`basin --remote deploy` sends the folder; the token deploys as itself: its function
    writes with its grants, and it cannot point one at a table it may not write, change
    another's function, or deploy one that reads secrets."""
    ana = orders("token", "create", "--name", "ana", "--grant", "write:sandbox.*").strip()
    bo = orders("token", "create", "--name", "bo", "--grant", "write:sandbox.*").strip()

    def folder(name, text):
        path = tmp_path / name
        path.mkdir()
        (path / "functions.py").write_text(text)
        return str(path)

    mine = folder("mine", COPY)
    plan = json.loads(remote("deploy", mine, "--plan", "--format", "json", token=ana).stdout)
    assert [(c["function"], c["action"]) for c in plan["changes"]] == [("copy_rows", "add")] and not plan["applied"]
    remote("deploy", mine, token=ana)
    listed = json.loads(orders("functions", "ls", "--format", "json"))
    assert [(f["name"], f["deployed_by"]["principal"]) for f in listed] == [("copy_rows", "ana")]
    assert "deployed" in orders("functions", "show", "copy_rows") and "by ana" in orders("functions", "show", "copy_rows")

    # Its writes name it, through the function door, and go where ana may write.
    status, answer = send("POST", f"{remote.base}/fn/copy_rows", remote.writer, {"id": 7})
    assert status == 200, answer
    head = orders.json("log", "main", "-n", "1")[0]
    assert (head["author"], head["door"]) == ("function:copy_rows", "function")
    assert orders.json("query", "SELECT id FROM sandbox.copies") == [{"id": 7}]

    refusals = [
        (ana, COPY.replace("sandbox.copies", "sales.orders"),
         "appends to `sales.orders` on `main`, which `ana` may not write"),
        (bo, COPY, "function `copy_rows` was deployed by `ana`; `bo` may not change it"),
        (ana, COPY.replace("import pyarrow as pa\n", "import pyarrow as pa\n\n\n@basin.python('3.11', secrets=['TOKEN'])"),
         "reads secrets (TOKEN)"),
        # Buckets hold no grants: reading one's objects is an admin's to allow.
        (ana, COPY.replace('@basin.http("/hooks/copy", to="sandbox.copies")',
                           '@basin.on_object("landing", to="sandbox.copies")').replace("copy_rows", "land"),
         "watches bucket `landing`"),
        # Nobody takes another function's path (its calls and their bodies).
        (bo, COPY.replace("copy_rows", "grab"), "functions `copy_rows` and `grab` both declare the path /hooks/copy"),
        (remote.writer, COPY.replace("copy_rows", "mine"), "a token without a name cannot own functions"),
    ]
    for i, (token, text, why) in enumerate(refusals):
        refused = remote("deploy", folder(f"refused{i}", text), token=token, check=False)
        assert refused.returncode != 0 and why in refused.stderr and "hint:" in refused.stderr, refused.stderr
    # bo's deploy leaves ana's function alone, and so does the local user's; a reader may
    # not deploy at all, and sees who deployed a function but not with what grants.
    remote("deploy", folder("empty", "import basin\n"), token=bo)
    orders("deploy", str(tmp_path / "empty"))
    assert [f["name"] for f in json.loads(orders("functions", "ls", "--format", "json"))] == ["copy_rows"]
    status, answer = send("POST", f"{remote.base}/hooks/copy", remote.writer, {"id": 8})
    assert status == 200, answer
    listed = send("GET", f"{remote.base}/api/v1/functions", orders("token", "create", "--role", "reader").strip())[1]
    assert listed[0]["deployed_by"] == {"principal": "ana"}, listed
    reader = orders("token", "create", "--role", "reader").strip()
    assert "needs a writer" in remote("deploy", mine, token=reader, check=False).stderr


def test_a_token_runs_a_pipeline_remotely_with_its_grants(remote, orders, tmp_path):
    """`basin --remote run DIR` sends the project; the run acts as the token: it reads only
    what the token may read, writes only where it may (its run/ID branch and the target), and
    its merge names the token."""
    (tmp_path / "pay.csv").write_text("id,salary\n1,100\n")
    orders("import", str(tmp_path / "pay.csv"), "--table", "hr.salaries")
    carol = orders("token", "create", "--name", "carol", "--grant", "read:sales.*",
                   "--grant", "write:reports.*@main,run/*").strip()

    def project(name, namespace, sql):
        path = tmp_path / name
        path.mkdir()
        (path / "basin.toml").write_text(f'[project]\nname = "{name}"\nnamespace = "{namespace}"\n')
        (path / "totals.sql").write_text(sql)
        return str(path)

    good = project("good", "reports", "SELECT sum(amount) AS total FROM sales.orders\n")
    record = json.loads(remote("run", good, "--format", "json", token=carol).stdout)
    assert record["status"] == "succeeded" and record["target"] == "main", record
    assert orders.json("query", "SELECT total FROM reports.totals") == [{"total": "13.75"}]
    head = orders.json("log", "main", "-n", "1")[0]
    assert (head["author"], head["door"]) == ("carol", "api"), head

    # Its models read as carol: hr.salaries does not exist for her.
    peek = remote("run", project("peek", "reports", "SELECT * FROM hr.salaries\n"), token=carol, check=False)
    assert peek.returncode != 0 and "reads `hr.salaries`, which is neither a model" in peek.stderr, peek.stderr
    assert "model `totals` (totals.sql)" in peek.stderr, peek.stderr  # named as sent, not by the server's folder
    # It writes only where she may: not into sales.
    sneak = remote("run", project("sneak", "sales", "SELECT 1 AS one\n"), token=carol, check=False)
    assert sneak.returncode != 0 and "`carol` may not write `sales" in sneak.stderr, sneak.stderr
    assert "sales.totals" not in [t["table"] for t in json.loads(orders("table", "ls", "--format", "json"))]


SLOW_MODEL = (
    "import time\n\nimport basin\nimport pyarrow as pa\n\n\n"
    "@basin.python(\"3.11\")\n@basin.model()\n"
    "def slow():\n    time.sleep(15)\n    return pa.table({'x': [1]})\n")


def post_run(base, token, name, files, seconds):
    """A thread sending the project `files` (namespace `name`) to POST /api/v1/runs, whose
    client gives up after `seconds`; the answer, if one came, lands in `thread.answer`."""
    files = {"basin.toml": f'[project]\nname = "{name}"\nnamespace = "{name}"\n', **files}
    request = urllib.request.Request(
        f"{base}/api/v1/runs", data=json.dumps({"files": files}).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    answer = []

    def send_and_maybe_leave():
        try:
            with urllib.request.urlopen(request, timeout=seconds) as r:
                answer.append((r.status, json.loads(r.read())))
        except urllib.error.HTTPError as e:
            answer.append((e.code, json.loads(e.read())))
        except OSError:  # gave up waiting (TimeoutError), or the server went away
            pass
    client = threading.Thread(target=send_and_maybe_leave)
    client.answer = answer
    client.start()
    return client


def test_a_writer_has_its_runs_going_at_once_and_its_next_one_waits(orders):
    """`[server] max_runs_per_writer = 2`: a writer's two runs go on at once, after their
    clients hang up, each holding one of its turns until it ends; its third run waits for
    one, a run whose client leaves while it waits never starts, and another writer's run
    (whose token has no name either) is not held up."""
    (orders.home / "basin.toml").write_text("[server]\nmax_runs_per_writer = 2\n")
    ana = orders("token", "create", "--role", "writer").strip()
    ben = orders("token", "create", "--role", "writer").strip()
    base, proc = start_server(orders)
    see = lambda name: metric(base, ben, name)
    waits = lambda: see(r'basin_limit_hits_total\{limit="max_runs_per_writer"\}')
    runs = lambda: {r["project"]: r["status"] for r in send("GET", f"{base}/api/v1/runs", ben)[1]}
    fast = {"fast.sql": "SELECT 1 AS one\n"}
    try:
        # Ana's two slow runs, whose clients hang up: the runs go on, at once.
        for name in ["slow", "slow2"]:
            post_run(base, ana, name, {"slow.py": SLOW_MODEL}, 1).join()
        wait_for(lambda: runs() == {"slow": "running", "slow2": "running"}, 60)

        # Ben is not held up by her turn.
        status, record = send("POST", f"{base}/api/v1/runs", ben,
                              {"files": {"basin.toml": '[project]\nname = "ben"\nnamespace = "ben"\n', **fast}})
        assert (status, record["status"]) == (200, "succeeded"), record
        assert runs() == {"slow": "running", "slow2": "running", "ben": "succeeded"}

        # Her next run waits; one whose client leaves while it waits starts nothing.
        post_run(base, ana, "left", fast, 1).join()
        assert waits() == 1
        wait_for(lambda: see("basin_writer_runs_waiting") == 0, 10)
        after = post_run(base, ana, "after", fast, 120)
        wait_for(lambda: see("basin_writer_runs_waiting") == 1, 10)
        assert runs() == {"slow": "running", "slow2": "running", "ben": "succeeded"} and not after.answer

        # Her waiting run starts once a slow one ends.
        after.join(120)
        status, record = after.answer[0]
        assert (status, record["status"]) == (200, "succeeded"), record
        wait_for(lambda: runs() == {"slow": "succeeded", "slow2": "succeeded", "ben": "succeeded",
                                    "after": "succeeded"}, 30, show=runs)
        assert waits() == 2 and see("basin_writer_runs_waiting") == 0
    finally:
        proc.kill()
        proc.wait()
