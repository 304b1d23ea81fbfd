"""`basin ingest` against a real Postgres, started here: initdb in a temporary folder, a free
loopback port, `wal_level=logical`, password logins over TCP. Each test gets its own database.

What a full load must show: every supported type equal to the source (NULLs, numerics at full
precision), row counts and a digest per table, read back by PyIceberg and `basin query`; one
commit for all tables; a re-run replaces; an unsupported type names its column; a bad source
leaves the catalog as it was.
"""

import datetime
import glob
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from pyiceberg.table import StaticTable

from conftest import BASIN

PASSWORD = "s3cret-pw"


def postgres_bindir() -> Path | None:
    """The newest Debian `postgresql` server binaries, else `pg_config --bindir`."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self, port: int, data: Path, tls: bool):
        self.port = port
        self.data = data
        self.tls = tls

    def connect(self, dbname="postgres", **kw):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", password=PASSWORD,
                               dbname=dbname, autocommit=True, **kw)

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"


@pytest.fixture(scope="module")
def postgres():
    bindir = postgres_bindir()
    if bindir is None:
        # scripts/test.sh installs them first: missing there is a failure, not a skip.
        message = "no Postgres server binaries (apt-get install postgresql; scripts/env.sh does)"
        if os.environ.get("BASIN_FULL_SUITE"):
            pytest.fail(message)
        pytest.skip(message)
    # initdb refuses to run as root: the cluster belongs to `nobody` then.
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="basin-pg-"))
    (folder / "pw").write_text(PASSWORD + "\n")
    if as_user:
        shutil.chown(folder, "nobody")
        shutil.chown(folder / "pw", "nobody")
    data = folder / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                    "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256",
                    f"--pwfile={folder / 'pw'}"], check=True, capture_output=True)
    # TLS on when openssl can make a certificate (connections then use it: sslmode=prefer).
    tls = shutil.which("openssl") is not None
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-keyout", str(data / "server.key"), "-out", str(data / "server.crt")],
                       check=True, capture_output=True)
        os.chmod(data / "server.key", 0o600)
        if as_user:
            shutil.chown(data / "server.key", "nobody")
            shutil.chown(data / "server.crt", "nobody")
    port = free_port()
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} "
               "-c wal_level=logical -c fsync=off -c max_wal_senders=4 -c max_replication_slots=4"
               + (" -c ssl=on" if tls else ""))
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w",
                    "-o", options, "start"], check=True, capture_output=True)
    try:
        yield Postgres(port, data, tls)
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def db(postgres, request):
    """A fresh database for one test; returns (postgres, name, connection)."""
    name = "t_" + uuid.uuid4().hex[:12]
    with postgres.connect() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    conn = postgres.connect(name)
    yield postgres, name, conn
    conn.close()


def declare(lakehouse, postgres, dbname, tables, name="shop", extra=""):
    """A [sources.NAME] in the lakehouse's basin.toml, the password in SHOP_PW."""
    listed = ", ".join(f'"{t}"' for t in tables)
    with open(lakehouse.home / "basin.toml", "a") as f:
        f.write(f'\n[sources.{name}]\nurl = "{postgres.url(dbname)}"\npassword_env = "SHOP_PW"\n'
                f'tables = [{listed}]\nnamespace = "{name}"\n{extra}')
    lakehouse.env["SHOP_PW"] = PASSWORD


EVERYTHING = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS int4 CHECK (VALUE > 0);
CREATE TABLE everything (
    id int8 PRIMARY KEY, small int2, medium int4, f4 float4, f8 float8, flag bool,
    name text, code varchar(10), fixed char(5), price numeric(38,10), amount numeric(12,2),
    whole numeric(18,0), day date, at_time time, ts timestamp, tstz timestamptz, id_uuid uuid,
    raw bytea, doc json, docb jsonb, feeling mood, pos positive
);
INSERT INTO everything VALUES
 (1, 32767, 2147483647, 1.5, 3.141592653589793, true, 'héllo ✓', 'abc', 'ab',
  9999999999999999999999999999.9999999999, 1234567890.12, 999999999999999999, '2024-02-29', '23:59:59.999999',
  '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.654321+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '\\x00ff10', '{"a": [1, 2]}', '{"b": {"c": null}}', 'happy', 7),
 (2, -32768, -2147483648, -0.1, -1e300, false, '', '', '', -9999999999999999999999999999.9999999999,
  -0.01, -1, '0001-01-01', '00:00:00', '1970-01-01 00:00:00', '1900-06-30 23:59:59.999999+00',
  '00000000-0000-0000-0000-000000000000', '\\x', '[]', '[]', 'sad', 1),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (4, 0, 0, 0, 0, true, 'x', 'y', 'z', 0.0000000001, 0, 0, '9999-12-31', '12:00', '2262-04-11 23:47:16',
  '2038-01-19 03:14:08+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '\\xdeadbeef', '"s"', '1', 'ok', 2147483647),
 (5, 1, 1, 3.4e38, 5e-324, false, repeat('long ', 1000), 'varchar', 'abcde', 12345678901234567890.0123456789,
  99999.99, 123456789012345678, '1999-12-31', '01:02:03.000004', '2000-01-01 00:00:00.000001',
  '1999-12-31 23:59:59.999999-08', '6ba7b810-9dad-11d1-80b4-00c04fd430c8', decode(repeat('ab', 5000), 'hex'),
  '{"k": "v"}', '{"k": 1.50}', NULL, NULL);
CREATE TABLE orders (id int8, customer int4, amount numeric(12,2), placed timestamptz);
INSERT INTO orders SELECT i, i % 1000, (i % 10000) / 100.0, timestamptz '2024-01-01 00:00+00' + i * interval '1 minute'
  FROM generate_series(1, 60000) i;
"""

COLUMNS = ("id, small, medium, f4, f8, flag, name, code, fixed, price, amount, whole, day, at_time, ts, tstz, "
           "id_uuid, raw, doc::text, docb::text, feeling::text, pos")


def f32(x):
    return None if x is None else struct.unpack("f", struct.pack("f", x))[0]


def normal(row: dict) -> tuple:
    """One row as comparable values: float4 at float32, uuids as UUID, bytes as bytes."""
    out = []
    for key, value in row.items():
        if key == "f4":
            value = f32(value)
        elif key == "id_uuid" and isinstance(value, bytes):
            value = uuid.UUID(bytes=value)
        elif isinstance(value, memoryview):
            value = bytes(value)
        out.append(value)
    return tuple(out)


def source_rows(conn, table, columns="*", order="id"):
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")
        rows = cur.fetchall()
    # `doc::text` comes back as `doc`, like the Basin column.
    return [normal(r) for r in rows]


def basin_rows(lakehouse, table, order="id"):
    show = lakehouse.json("table", "show", table)
    arrow = StaticTable.from_metadata(show["metadata_location"]).scan().to_arrow().sort_by(order)
    return [normal(r) for r in arrow.to_pylist()]


def canonical(value):
    """A value's text, the same for equal values from either side: aware times in UTC,
    decimals in plain notation at their scale."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return repr(value)


def digest(rows) -> str:
    text = "\n".join("|".join(canonical(v) for v in row) for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def head(lakehouse) -> str:
    return lakehouse.json("log", "--limit", "1")[0]["id"]


def test_a_full_load_equals_the_source_in_every_type(lakehouse, db):
    postgres, name, conn = db
    conn.execute(EVERYTHING)
    declare(lakehouse, postgres, name, ["public.everything", "public.orders"])
    before = head(lakehouse)

    report = lakehouse.json("ingest", "shop")

    assert [(t["table"], t["rows"]) for t in report["tables"]] == [("shop.everything", 5), ("shop.orders", 60000)]
    assert report["rows"] == 60005 and report["bytes"] > 0 and report["rows_per_second"] > 0
    expected = source_rows(conn, "everything", COLUMNS)
    loaded = basin_rows(lakehouse, "shop.everything")
    for want, got in zip(expected, loaded):
        assert want == got
    assert digest(loaded) == digest(expected)
    # Full precision: 38 digits, 10 after the point, both signs.
    assert loaded[0][9] == Decimal("9999999999999999999999999999.9999999999")
    assert loaded[1][9] == Decimal("-9999999999999999999999999999.9999999999")
    assert loaded[2] == (3,) + (None,) * 21
    assert digest(basin_rows(lakehouse, "shop.orders")) == digest(source_rows(conn, "orders"))

    # Exact types: numeric(p,s) keeps p and s, timestamptz is a timestamp with zone.
    types = {c["name"]: c["type"].replace(" ", "") for c in lakehouse.json("table", "show", "shop.everything")["columns"]}
    assert types["price"] == "decimal(38,10)" and types["amount"] == "decimal(12,2)"
    assert types["tstz"] == "timestamptz" and types["ts"] == "timestamp" and types["id_uuid"] == "uuid"
    assert types["small"] == "int" and types["id"] == "long" and types["raw"] == "binary"

    # SQL over the loaded tables agrees with the source.
    got = lakehouse.json("query", "SELECT count(*) AS n, sum(amount) AS total, count(DISTINCT id) AS ids FROM shop.orders")
    n, total, ids = conn.execute("SELECT count(*), sum(amount), count(DISTINCT id) FROM orders").fetchone()
    assert (got[0]["n"], Decimal(str(got[0]["total"])), got[0]["ids"]) == (n, total, ids)

    # Both tables in one commit on top of the one before.
    log = lakehouse.json("log", "--limit", "2")
    assert log[0]["message"] == "ingest shop: 2 tables, 60005 rows" and log[1]["id"] == before


def test_a_rerun_replaces_the_rows_and_adds_new_columns(lakehouse, db):
    postgres, name, conn = db
    conn.execute("CREATE TABLE items (id int4, label text); "
                 "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 1000) i")
    declare(lakehouse, postgres, name, ["items"])
    lakehouse("ingest", "shop")
    conn.execute("DELETE FROM items WHERE id % 2 = 0; UPDATE items SET label = 'changed' WHERE id < 10; "
                 "ALTER TABLE items ADD COLUMN weight float8; UPDATE items SET weight = id * 1.5 WHERE id > 990")

    report = lakehouse.json("ingest", "shop", "--full")

    assert report["rows"] == 500
    assert basin_rows(lakehouse, "shop.items") == source_rows(conn, "items")
    assert len(lakehouse.json("query", "SELECT DISTINCT id FROM shop.items")) == 500


def test_an_unsupported_type_names_its_column_and_can_be_skipped(lakehouse, db):
    postgres, name, conn = db
    conn.execute("CREATE TABLE odd (id int4, spot point, span interval[], note text); "
                 "INSERT INTO odd VALUES (1, '(1,2)', '{1 day}', 'a'), (2, NULL, NULL, NULL)")
    declare(lakehouse, postgres, name, ["public.odd"])
    before = head(lakehouse)

    failed = lakehouse.run("ingest", "shop", check=False)

    assert failed.returncode == 1
    assert "column public.odd.spot: type point has no Iceberg mapping" in failed.stderr
    assert "(and 1 more: public.odd.span)" in failed.stderr
    assert "hint: pass --skip-unsupported" in failed.stderr
    assert head(lakehouse) == before

    skipped = lakehouse.run("ingest", "shop", "--skip-unsupported", "--format", "json")
    assert "warning: left out public.odd.spot (point)" in skipped.stderr
    assert "warning: left out public.odd.span (interval[]): an array whose elements are not loadable" in skipped.stderr
    assert [c["name"] for c in lakehouse.json("table", "show", "shop.odd")["columns"]] == ["id", "note"]
    assert basin_rows(lakehouse, "shop.odd") == source_rows(conn, "odd", "id, note")


@pytest.mark.parametrize("case", ["unknown source", "connection refused", "wrong password", "no password",
                                  "missing table", "numeric without precision", "infinite date", "cdc"])
def test_a_bad_source_commits_nothing_and_says_what_to_do(lakehouse, db, case):
    postgres, name, conn = db
    conn.execute("CREATE TABLE orders (id int4, total numeric); INSERT INTO orders VALUES (1, 2.5)")
    conn.execute("CREATE TABLE fine (id int4); INSERT INTO fine VALUES (1)")
    conn.execute("CREATE TABLE days (id int4, d date); INSERT INTO days VALUES (1, '2024-01-01'), (2, 'infinity')")
    tables = ["public.fine", "public.orders"] if case == "numeric without precision" else ["public.fine"]
    if case == "infinite date":
        tables = ["public.fine", "public.days"]
    if case == "missing table":
        tables = ["public.fine", "public.ordrs"]
    declare(lakehouse, postgres, name, tables, extra='mode = "cdc"\n' if case == "cdc" else "")
    if case == "connection refused":
        text = (lakehouse.home / "basin.toml").read_text()
        (lakehouse.home / "basin.toml").write_text(text.replace(f":{postgres.port}/", f":{free_port()}/"))
    if case == "wrong password":
        lakehouse.env["SHOP_PW"] = "not it"
    if case == "no password":
        del lakehouse.env["SHOP_PW"]
    before = head(lakehouse)

    failed = lakehouse.run("ingest", "sohp" if case == "unknown source" else "shop", check=False)

    assert failed.returncode == 1, failed.stderr
    expected = {
        "unknown source": ("no source `sohp`", "did you mean `shop`?"),
        "connection refused": ("connection refused", "is Postgres running there"),
        "wrong password": ("Postgres refused the login", "$SHOP_PW"),
        "no password": ("$SHOP_PW is not set", "export SHOP_PW="),
        "missing table": ("table public.ordrs does not exist", "did you mean `public.orders`?"),
        "numeric without precision": ("public.orders.total", "--skip-unsupported"),
        "infinite date": ("public.days.d: the date is infinity", "load a view that casts it"),
        # Change data capture checks the server before it creates a slot or loads anything.
        "cdc": ("publication `basin` does not exist", "CREATE PUBLICATION basin FOR TABLE"),
    }[case]
    error, hint = failed.stderr.split("hint:", 1)
    assert expected[0] in error and expected[1] in hint, failed.stderr
    assert PASSWORD not in failed.stderr and "not it" not in failed.stderr
    assert head(lakehouse) == before
    assert lakehouse.json("table", "ls") == []


def test_source_add_ls_rm_edit_basin_toml_and_keep_its_comments(lakehouse, db):
    postgres, name, conn = db
    toml = lakehouse.home / "basin.toml"
    toml.write_text("# settings of this lakehouse\n[sql]\nquery_timeout = \"5m\"  # long reports\n")
    conn.execute("CREATE TABLE a (id int4); INSERT INTO a VALUES (1), (2)")

    lakehouse("source", "add", "shop", "--url", postgres.url(name), "--password-env", "SHOP_PW",
              "--tables", "public.a", "--namespace", "landing")
    listed = lakehouse.json("source", "ls")
    assert [(s["name"], s["namespace"], s["tables"], s["mode"]) for s in listed] == \
        [("shop", "landing", ["public.a"], "snapshot")]
    text = toml.read_text()
    assert "# settings of this lakehouse" in text and "# long reports" in text and PASSWORD not in text

    lakehouse.env["SHOP_PW"] = PASSWORD
    assert lakehouse.json("ingest", "shop")["tables"][0]["table"] == "landing.a"

    refused = lakehouse.run("source", "add", "bad", "--url", f"postgres://u:pw@127.0.0.1:{postgres.port}/x",
                            "--tables", "a", check=False)
    assert refused.returncode == 1 and "password_env" in refused.stderr and "pw@" not in refused.stderr
    lakehouse("source", "add", "live", "--url", postgres.url(name), "--password-env", "SHOP_PW", "--tables", "a",
              "--mode", "cdc", "--batch-rows", "500")
    assert 'mode = "cdc"' in toml.read_text() and "batch_rows = 500" in toml.read_text()
    live = [s for s in lakehouse.json("source", "ls") if s["name"] == "live"][0]
    assert (live["mode"], live["publication"], live["batch_rows"], live["slot"]) == ("cdc", "basin", 500, None)
    removed = lakehouse.run("source", "rm", "live")
    assert "dropped" not in removed.stderr  # no slot was ever made

    lakehouse("source", "rm", "shop")
    assert lakehouse.json("sources", "ls") == []
    assert "# long reports" in toml.read_text() and "[sources" not in toml.read_text()


def test_a_load_under_concurrent_writes_is_one_point_in_time(lakehouse, db):
    """Writers commit pairs (a row in `a` and its twin in `b`, in one transaction) and move
    rows of `a` to new pages while the tables are read: every table, every ctid range, must
    show the same instant, so the twins match and no row is read twice."""
    postgres, name, conn = db
    conn.execute("CREATE TABLE a (id int8, pad text); CREATE TABLE b (id int8, pad text); "
                 "INSERT INTO a SELECT i, repeat('x', 200) FROM generate_series(1, 200000) i; "
                 "INSERT INTO b SELECT id, pad FROM a")
    declare(lakehouse, postgres, name, ["public.a", "public.b"])
    stop = threading.Event()
    written = [0]

    def write():
        with postgres.connect(name) as w:
            next_id = 200001
            while not stop.is_set():
                with w.transaction():
                    w.execute("INSERT INTO a VALUES (%s, 'new')", (next_id,))
                    w.execute("INSERT INTO b VALUES (%s, 'new')", (next_id,))
                    w.execute("UPDATE a SET pad = 'moved' WHERE id = %s", (next_id % 200000 + 1,))
                next_id += 1
                written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.3)
        report = lakehouse.json("ingest", "shop", "--readers", "3")
    finally:
        stop.set()
        writer.join()

    assert written[0] > 0
    counts = lakehouse.json("query", "SELECT (SELECT count(*) FROM shop.a) AS a, (SELECT count(DISTINCT id) FROM shop.a) AS a_ids, "
                                     "(SELECT count(*) FROM shop.b) AS b")[0]
    assert counts["a"] == counts["a_ids"] == counts["b"], counts
    assert report["tables"][0]["rows"] == report["tables"][1]["rows"] == counts["a"]
    unmatched = lakehouse.json("query", "SELECT count(*) AS n FROM shop.a FULL JOIN shop.b ON a.id = b.id "
                                        "WHERE a.id IS NULL OR b.id IS NULL")[0]["n"]
    assert unmatched == 0


def test_views_and_partitioned_tables_load_in_one_stream(lakehouse, db):
    postgres, name, conn = db
    conn.execute("CREATE TABLE odd (id int4, tags int4[]); INSERT INTO odd VALUES (1, '{1,2}'), (2, NULL); "
                 "CREATE VIEW odd_text AS SELECT id, tags::text AS tags FROM odd; "
                 "CREATE TABLE events (id int4, day date) PARTITION BY RANGE (day); "
                 "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01'); "
                 "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01'); "
                 "INSERT INTO events SELECT i, date '2024-06-01' + i FROM generate_series(1, 400) i")
    declare(lakehouse, postgres, name, ["public.odd_text", "public.events"])

    lakehouse("ingest", "shop")

    assert basin_rows(lakehouse, "shop.odd_text") == [(1, "{1,2}"), (2, None)]
    assert basin_rows(lakehouse, "shop.events") == source_rows(conn, "events")
    # A whole schema: partitioned tables once, through their parent; views are not listed.
    with open(lakehouse.home / "basin.toml", "a") as f:
        f.write(f'\n[sources.everything]\nurl = "{postgres.url(name)}"\npassword_env = "SHOP_PW"\nschema = "public"\n')
    loaded = [t["table"] for t in lakehouse.json("ingest", "everything", "--skip-unsupported")["tables"]]
    assert loaded == ["everything.events", "everything.odd"]


def test_tls_connections_follow_the_urls_sslmode(lakehouse, db):
    postgres, name, conn = db
    if not postgres.tls:
        pytest.skip("no openssl to make the server a certificate")
    conn.execute("CREATE TABLE a (id int4); INSERT INTO a VALUES (1)")
    # This database takes TLS connections only.
    hba = postgres.data / "pg_hba.conf"
    hba.write_text(f"hostnossl {name} all 127.0.0.1/32 reject\n" + hba.read_text())
    conn.execute("SELECT pg_reload_conf()")
    declare(lakehouse, postgres, name, ["a"])
    text = (lakehouse.home / "basin.toml").read_text()

    (lakehouse.home / "basin.toml").write_text(text.replace(f"/{name}\"", f"/{name}?sslmode=require\""))
    assert lakehouse.json("ingest", "shop")["rows"] == 1

    (lakehouse.home / "basin.toml").write_text(text.replace(f"/{name}\"", f"/{name}?sslmode=disable\""))
    refused = lakehouse.run("ingest", "shop", check=False)
    assert refused.returncode == 1 and "no encryption" in refused.stderr, refused.stderr


def test_one_dimensional_arrays_load_as_lists(lakehouse, db):
    postgres, name, conn = db
    conn.execute("CREATE TABLE lists (id int4, ints int4[], names text[], amounts numeric(10,2)[], days date[], "
                 "stamps timestamptz[], empty int8[]); "
                 "INSERT INTO lists VALUES (1, '{1,NULL,3}', '{a,\"b c\",NULL}', '{1.50,-2.25}', '{2024-01-01}', "
                 "'{2024-01-01 10:00+02}', '{}'), (2, NULL, NULL, NULL, NULL, NULL, NULL), "
                 "(3, '{}', '{\"\"}', '{0}', '{}', '{}', '{9223372036854775807}'); "
                 "CREATE TABLE grid (id int4, cells int4[]); INSERT INTO grid VALUES (1, '{{1,2},{3,4}}')")
    declare(lakehouse, postgres, name, ["lists"])

    lakehouse("ingest", "shop")

    assert basin_rows(lakehouse, "shop.lists") == source_rows(conn, "lists")
    schema = StaticTable.from_metadata(lakehouse.json("table", "show", "shop.lists")["metadata_location"]).schema()
    types = {f.name: str(f.field_type) for f in schema.fields}
    assert types["ints"] == "list<int>" and types["amounts"] == "list<decimal(10, 2)>", types
    assert types["stamps"] == "list<timestamptz>" and types["empty"] == "list<long>", types
    got = lakehouse.json("query", "SELECT id, cardinality(ints) AS n FROM shop.lists ORDER BY id")
    assert [r.get("n") for r in got] == [3, None, 0]

    # Several dimensions have no list to go to: the column is named.
    declare(lakehouse, postgres, name, ["grid"], name="grids")
    failed = lakehouse.run("ingest", "grids", check=False)
    assert failed.returncode == 1 and "public.grid.cells: a 2-dimensional array" in failed.stderr, failed.stderr


def test_a_load_killed_midway_commits_nothing_and_the_next_one_lands(lakehouse, db):
    postgres, name, conn = db
    conn.execute("CREATE TABLE big (id int8, pad text); "
                 "INSERT INTO big SELECT i, repeat('y', 100) FROM generate_series(1, 400000) i")
    declare(lakehouse, postgres, name, ["big"])
    before = head(lakehouse)

    proc = subprocess.Popen([BASIN, "--home", str(lakehouse.home), "ingest", "shop"], env=lakehouse.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Killed once its readers are copying (or at the latest moment before the commit).
    def copying():
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'basin' "
                            "AND query LIKE 'COPY%'").fetchone()[0] > 0 or proc.poll() is not None
    deadline = time.monotonic() + 60
    while not copying() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()

    assert head(lakehouse) == before
    # Postgres notices the dead client: no session of Basin's is left holding the snapshot.
    deadline = time.monotonic() + 30
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'basin'").fetchone()[0]:
        assert time.monotonic() < deadline, "Basin's sessions outlived it"
        time.sleep(0.1)
    assert lakehouse.json("ingest", "shop")["rows"] == 400000
    assert lakehouse.json("query", "SELECT count(DISTINCT id) AS n FROM shop.big")[0]["n"] == 400000
