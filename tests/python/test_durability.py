"""Issue #14 through the real binary: concurrent `basin import` processes all land their
appends, a truncated CSV is refused and leaves the table as it was, and symbolic links in a
bucket are neither followed by `basin serve` nor accepted by `basin put`."""

import json
import os
import subprocess
import sys

from conftest import BASIN, send, start_server, wait_for

WRITERS = 8
APPENDS = 25

WRITER = """
import os, subprocess, sys
basin, home, writer, appends = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(appends):
    path = os.path.join(home, f"w{writer}-{i}.csv")
    with open(path, "w") as f:
        f.write(f"writer,n\\n{writer},{i}\\n")
    done = subprocess.run([basin, "--home", home, "import", path, "--table", "c.t", "--mode", "append"],
                          capture_output=True, text=True)
    print(f"{writer},{i},{done.returncode},{done.stderr.strip()!r}", flush=True)
"""


def test_eight_processes_appending_at_once_all_land(lakehouse):
    """Regression: 199 of 200 appends used to commit; one lost to "`c.t` changed"."""
    first = lakehouse.home / "first.csv"
    first.write_text("writer,n\n-1,-1\n")
    lakehouse("import", str(first), "--table", "c.t")
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, BASIN, str(lakehouse.home), str(w), str(APPENDS)],
                         stdout=subprocess.PIPE, text=True, env=lakehouse.env)
        for w in range(WRITERS)
    ]
    results = [line.split(",", 3) for w in writers for line in w.communicate()[0].splitlines()]
    failed = [r for r in results if r[2] != "0"]
    assert len(results) == WRITERS * APPENDS
    assert failed == [], failed
    rows = lakehouse("query", "SELECT count(*) AS n, count(DISTINCT (writer, n)) AS d FROM c.t", "--format", "csv")
    assert rows == f"n,d\n{WRITERS * APPENDS + 1},{WRITERS * APPENDS + 1}\n"


def test_a_truncated_csv_is_refused_naming_its_line(lakehouse):
    good = lakehouse.home / "good.csv"
    good.write_text("id,note\n1,a\n")
    lakehouse("import", str(good), "--table", "s.t")
    head = lakehouse.json("log", "main")[0]["id"]
    cut = lakehouse.home / "cut.csv"
    cut.write_text('id,note\n2,b\n3,"unterminated\n4,d\n')
    done = lakehouse.run("import", str(cut), "--table", "s.t", check=False)
    assert done.returncode == 1, done.stderr
    assert f"{cut}:3: a quoted field opened on this line is never closed" in done.stderr
    assert "hint:" in done.stderr
    assert lakehouse.json("log", "main")[0]["id"] == head
    assert lakehouse("query", "SELECT count(*) AS n FROM s.t", "--format", "csv") == "n\n1\n"


def test_a_data_file_removed_outside_basin_fails_every_read_naming_it(lakehouse):
    """A query never answers without the rows of a file its snapshot names: with the file
    gone, each read fails, names the file and says how to recover."""
    for n, rows in enumerate(["1,a\n2,b\n", "3,c\n"]):
        part = lakehouse.home / f"part{n}.csv"
        part.write_text("id,note\n" + rows)
        lakehouse("import", str(part), "--table", "s.t")
    first = lakehouse.json("log", "main")[1]["id"]  # newest first: the first import
    files = sorted((lakehouse.home / ".basin" / "warehouse").rglob("*.parquet"), key=lambda p: p.name)
    assert len(files) == 2
    files[1].unlink()  # uuid v7 names: the second import's file
    # A LIMIT the files still there cannot fill fails too; one they can is answered from them
    # (a LIMIT without ORDER BY takes any rows).
    for sql in ["SELECT count(*) FROM s.t", "SELECT * FROM s.t WHERE id > 0", "SELECT * FROM s.t LIMIT 3"]:
        done = lakehouse.run("query", sql, check=False)
        assert done.returncode == 1 and done.stdout == "", (sql, done.stdout)
        assert f"`s.t`: its data file {files[1]} is missing" in done.stderr, done.stderr
        assert "hint: restore the file, or put the table back" in done.stderr
    assert lakehouse.json("query", "SELECT * FROM s.t LIMIT 2") == [{"id": 1, "note": "a"}, {"id": 2, "note": "b"}]
    # Callers of the front doors read the same message: it says what to do.
    reader = lakehouse("token", "create", "--role", "reader").strip()
    base, proc = start_server(lakehouse)
    try:
        status, body = send("POST", f"{base}/api/v1/query", reader, {"sql": "SELECT count(*) FROM s.t"})
    finally:
        proc.kill()
        proc.wait()
    assert status == 500 and "is missing" in body["error"]["message"], body
    assert "basin table revert" in body["error"]["hint"]
    # Time travel to before the file still reads; so does the table once reverted.
    count = ["query", "SELECT count(*) AS n FROM s.t", "--format", "csv"]
    assert lakehouse(*count, "--ref", f"main@{first}") == "n\n2\n"
    lakehouse("table", "revert", "s.t", "--to", f"main@{first}")
    assert lakehouse(*count) == "n\n2\n"


LOAD = '''
import basin

@basin.python("3.11", timeout="10s")
@basin.on_object(bucket="landing", suffix=".csv", to="raw.landed")
def load(event, context):
    return context.read_table()
'''


def test_symbolic_links_in_a_bucket_are_skipped(lakehouse, tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "load.py").write_text(LOAD)
    lakehouse("deploy", str(functions))
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.csv"
    secret.write_text("id\n666\n")
    landing = lakehouse.home / ".basin" / "buckets" / "landing"
    landing.mkdir(parents=True, exist_ok=True)

    # basin put refuses a link as the file to upload, naming what it points to.
    link = tmp_path / "link.csv"
    link.symlink_to(secret)
    done = lakehouse.run("put", str(link), "landing/a.csv", check=False)
    assert done.returncode == 1
    assert "is a symbolic link" in done.stderr and f"hint: put the file it points to: `basin put {secret}" in done.stderr
    # ... and a key through a linked folder.
    (landing / "linked").symlink_to(outside, target_is_directory=True)
    done = lakehouse.run("put", str(secret), "landing/linked/b.csv", check=False)
    assert done.returncode == 1 and "linked is a symbolic link" in done.stderr

    # One link is there at start-up (the scan); one is moved in while serving (the watcher).
    (landing / "at-start.csv").symlink_to(secret)
    _, server = start_server(lakehouse, "--no-auth")
    try:
        (landing / ".moved.part").symlink_to(secret)
        os.rename(landing / ".moved.part", landing / "moved.csv")
        (outside / "real.csv").write_text("id\n667\n")  # seen as landing/linked/real.csv
        lakehouse("put", str(outside / "real.csv"), "landing/real.csv")
        # The real file was noticed after the links, so once it is stored they were seen too.
        wait_for(lambda: [e["state"] for e in lakehouse.json("events", "ls")] == ["succeeded"], 120)
    finally:
        server.kill()
        server.wait()
    stderr = server.stderr.read()
    events = lakehouse.json("events", "ls")
    assert [e["payload"]["key"] for e in events] == ["real.csv"]
    assert lakehouse("query", "SELECT id FROM raw.landed", "--format", "csv") == "id\n667\n"
    assert f"skipping {landing / 'at-start.csv'}: it is a symbolic link" in stderr
    assert f"skipping {landing / 'moved.csv'}: it is a symbolic link" in stderr


def test_put_without_a_server_says_the_object_waits_then_serve_handles_it(lakehouse, tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "load.py").write_text(LOAD)
    lakehouse("deploy", str(functions))
    first = tmp_path / "first.csv"
    first.write_text("id\n1\n")
    done = lakehouse.run("put", str(first), "landing/first.csv")
    assert "no `basin serve` of this lakehouse runs on this machine, so the object waits" in done.stderr
    _, server = start_server(lakehouse, "--no-auth")
    try:
        wait_for(lambda: [e["state"] for e in lakehouse.json("events", "ls")] == ["succeeded"], 120)
        second = tmp_path / "second.csv"
        second.write_text("id\n2\n")
        done = lakehouse.run("put", str(second), "landing/second.csv")
        assert "no `basin serve`" not in done.stderr, done.stderr
        wait_for(lambda: [e["state"] for e in lakehouse.json("events", "ls")] == ["succeeded"] * 2, 120)
    finally:
        server.kill()
        server.wait()
    assert lakehouse("query", "SELECT id FROM raw.landed ORDER BY id", "--format", "csv") == "id\n1\n2\n"
