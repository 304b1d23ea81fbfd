"""The Python SDK's decorators record declarations without changing the functions."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[2] / "python"
sys.path.insert(0, str(SDK))

import basin  # noqa: E402
from basin.decorators import DeclarationError  # noqa: E402

PIPELINE = '''
import basin

@basin.python("3.11", pip={"pandas": "2.2.3"}, timeout="5m", memory="2GiB", secrets=["API_KEY"])
@basin.model(materialize="replace", partition_by="day(o_orderdate)")
def top_customers(orders=basin.Model("tpch.orders", columns=["o_custkey", "o_totalprice"],
                                     filter="o_orderdate >= '1995-01-01'")):
    return orders

@basin.model(materialize=None)
def cleaned(top=basin.Model("top_customers")):
    return top

@basin.expectation()
def no_negative_revenue(top=basin.Model("top_customers")):
    return True

def helper():
    return 1
'''


def test_decorated_functions_still_run_as_plain_python():
    @basin.python("3.11", timeout="30s")
    @basin.model()
    def double(x=basin.Model("t.x")):
        return x * 2

    assert double(21) == 42
    assert double.__basin__.timeout_seconds == 30.0
    assert double.__basin__.model == {"name": "double", "materialize": "replace", "partition_by": [],
                                      "incremental": False, "key": []}

    @basin.model(incremental=True, key="id")
    def latest(rows=basin.Model("t.x")):
        return rows

    assert latest.__basin__.model["incremental"] is True and latest.__basin__.model["key"] == ["id"]
    with pytest.raises(basin.decorators.DeclarationError, match="add incremental=True"):
        basin.model(key="id")
    with pytest.raises(basin.decorators.DeclarationError, match="cannot write the table it watches"):
        basin.on_commit("sales.orders", to="sales.orders")


def test_spec_lists_declarations_in_file_order(tmp_path):
    path = tmp_path / "pipeline.py"
    path.write_text(PIPELINE)
    out = subprocess.run([sys.executable, "-m", "basin.spec", str(path)], capture_output=True, text=True,
                         env={"PYTHONPATH": str(SDK)}, check=True).stdout
    found = json.loads(out)
    assert [f["function"] for f in found] == ["top_customers", "cleaned", "no_negative_revenue"]
    top = found[0]
    assert top["python"] == "3.11" and top["pip"] == {"pandas": "2.2.3"}
    assert top["timeout_seconds"] == 300.0 and top["memory_bytes"] == 2 * 2**30
    assert top["secrets"] == ["API_KEY"] and top["internet"] is False
    assert top["model"]["partition_by"] == ["day(o_orderdate)"]
    assert top["inputs"]["orders"] == {"name": "tpch.orders", "columns": ["o_custkey", "o_totalprice"],
                                       "filter": "o_orderdate >= '1995-01-01'"}
    assert found[1]["model"]["materialize"] is None
    assert found[2]["expectation"] is True and found[2]["inputs"]["top"]["name"] == "top_customers"


@pytest.mark.parametrize("bad, words", [
    (lambda: basin.python("eleven"), "Python version"),
    (lambda: basin.python(pip={"pandas": ""}), "map a package to a version"),
    (lambda: basin.model(materialize="upsert"), "'replace', 'append' or None"),
    (lambda: basin.Model("not a name"), "'ns.table'"),
    (lambda: basin.Model("t.x", columns="a"), "list of column names"),
    (lambda: basin.python(timeout="soon")(lambda: None), "duration"),
    (lambda: basin.python(memory="lots")(lambda: None), "size"),
])
def test_bad_declarations_fail_early_and_say_what_to_write(bad, words):
    with pytest.raises(DeclarationError, match=words):
        bad()


def spec(path, *args):
    return subprocess.run([sys.executable, "-m", "basin.spec", str(path), *args], capture_output=True,
                          text=True, env={"PYTHONPATH": str(SDK)})


def test_spec_reads_declarations_without_running_the_file(tmp_path):
    path = tmp_path / "fns.py"
    path.write_text(
        "import not_installed_anywhere\n"
        "from basin import python as py, Model\n"
        "raise SystemExit('the file must not run')\n"
        "@py('3.12', pip={'polars': '1.0.0'}, concurrency=2)\n"
        "def f(t=Model('a.b', columns=['x'])):\n    pass\n"
        "def handler(event, context):\n    pass\n"
    )
    out = spec(path)
    assert out.returncode == 0, out.stderr
    [f] = json.loads(out.stdout)
    assert (f["python"], f["pip"], f["concurrency"]) == ("3.12", {"polars": "1.0.0"}, 2)
    assert f["inputs"]["t"]["columns"] == ["x"]
    plain = json.loads(spec(path, "--function", "handler").stdout)
    assert plain[0]["params"] == ["event", "context"] and plain[0]["python"] is None


def test_spec_errors_name_the_line_and_what_to_write(tmp_path):
    path = tmp_path / "fns.py"
    path.write_text("import basin\nVERSION = '3.11'\n\n@basin.python(VERSION)\ndef f():\n    pass\n")
    out = spec(path)
    assert out.returncode == 1
    assert f"{path}:4: @basin.python: `VERSION` is not a literal" in out.stderr
    missing = spec(path, "--function", "g")
    assert "no function `g`" in missing.stderr and "functions: f" in missing.stderr


def test_the_workers_rules_are_opened_again_once_old(tmp_path, monkeypatch):
    """The worker opens the paths of its spares' Landlock rules once (basin._sandbox.prepare)
    and again once they are older than RULES_MAX_AGE, so a file replaced by a rename (as
    /etc/hosts can be) is granted as it is now, not as it was when the worker started."""
    from basin import _sandbox

    hosts = tmp_path / "hosts"
    hosts.write_text("old\n")
    config = {"internet": False, "read": [str(hosts)], "limits": {}, "off": []}

    def granted_inode():
        fds = [fd for fd, _, path in _sandbox._OPENED.rules if path == str(hosts)]
        assert len(fds) == 1
        return os.fstat(fds[0]).st_ino

    try:
        _sandbox.prepare(config)
        first = granted_inode()
        assert first == hosts.stat().st_ino
        replacement = tmp_path / "hosts.new"
        replacement.write_text("new\n")
        os.rename(replacement, hosts)
        _sandbox.refresh(config)
        assert granted_inode() == first  # still young: kept
        open_before = len(os.listdir("/proc/self/fd"))
        monkeypatch.setattr(_sandbox, "RULES_MAX_AGE", 0.0)
        _sandbox.refresh(config)
        assert granted_inode() == hosts.stat().st_ino != first
        # The old descriptors were closed: as many are open as before.
        assert len(os.listdir("/proc/self/fd")) == open_before
    finally:
        _sandbox._close_opened()
    assert _sandbox._OPENED is None
