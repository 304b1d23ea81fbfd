"""`basin ingest` from a real MariaDB server, started here: its own data folder, a free
loopback port, the binary log on, a password login over TCP.

What a full load must show: every type equal to the source row by row (read back by PyIceberg
and `basin query`), all tables in one commit at one point in time (also under concurrent
writers, with several readers), the binary log's position recorded, an unsupported type named
(or left out on request), a bad password or a kill during the load leaving the lakehouse as
it was.
"""

import datetime
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import pymysql
import pytest
from pyiceberg.table import StaticTable

from conftest import BASIN, Basin

PASSWORD = "my-s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MariaDB:
    def __init__(self, port: int):
        self.port = port

    def connect(self, database=None, user="root", password=""):
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                               database=database, autocommit=True, init_command="SET time_zone = '+00:00'")

    def url(self, database: str) -> str:
        return f"mysql://basin@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="module")
def mariadb():
    if not Path("/usr/sbin/mariadbd").exists():
        message = "no MariaDB server (apt-get install mariadb-server; scripts/env.sh does)"
        if os.environ.get("BASIN_FULL_SUITE"):
            pytest.fail(message)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="basin-mariadb-"))
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={folder / 'data'}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={folder / 'data'}", f"--socket={folder / 'sock'}",
         f"--port={port}", "--bind-address=127.0.0.1", "--user=root", f"--log-bin={folder / 'binlog'}",
         "--binlog-format=ROW", "--server-id=1", f"--pid-file={folder / 'pid'}"],
        stdout=subprocess.DEVNULL, stderr=open(folder / "log", "w"))
    db = MariaDB(port)
    deadline = time.time() + 60
    while True:
        try:
            db.connect().close()
            break
        except pymysql.err.OperationalError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError((folder / "log").read_text())
            time.sleep(0.2)
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER 'basin'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
        cur.execute("GRANT SELECT, RELOAD, REPLICATION CLIENT ON *.* TO 'basin'@'127.0.0.1'")
    yield db
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)


def lakehouse_for(tmp_path, db: MariaDB, database: str, extra: str = "") -> Basin:
    home = tmp_path / "lake"
    home.mkdir()
    subprocess.run([BASIN, "init", str(home)], check=True, capture_output=True)
    (home / "basin.toml").write_text(
        f'[sources.shop]\nurl = "{db.url(database)}"\npassword_env = "SHOP_PW"\n'
        f'schema = "{database}"\n{extra}')
    return Basin(home, {"SHOP_PW": PASSWORD})


def database(db: MariaDB, name: str, *statements: str):
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"USE {name}")
        for statement in statements:
            cur.execute(statement)


KINDS = """CREATE TABLE kinds (
  id INT PRIMARY KEY, ti TINYINT, su SMALLINT UNSIGNED, mi MEDIUMINT, i INT, iu INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED, d DECIMAL(12,3), dw DECIMAL(38,10), f FLOAT, db DOUBLE,
  dt DATE, dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), yr YEAR,
  c CHAR(3), vc VARCHAR(20), tx TEXT, en ENUM('small','large'), st SET('x','y','z'), js JSON,
  bn BINARY(3), vb VARBINARY(10), bl BLOB, bt BIT(10))"""

ROWS = [
    "(1, -128, 65535, -8388608, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,"
    " -123456789.125, 1234567890123456789012345678.0123456789, 1.5, -2.25e300, '1999-12-31',"
    " '2024-02-29 23:59:59.999999', '2038-01-19 03:14:07.5', '-838:59:59.000001', 1901,"
    " 'ab', 'héllo ☃', REPEAT('long ', 100), 'large', 'x,z', '{\"a\": [1, 2]}', 'ab',"
    " X'00FF10', X'DEADBEEF', b'1000000001')",
    "(2, 127, 0, 8388607, 2147483647, 0, 9223372036854775807, 0, 0.001, -0.0000000001, -0.25, 0,"
    " '0000-00-00', '1970-01-01 00:00:00', '1970-01-01 00:00:01', '00:00:00', 2155, '', '', '',"
    " 'small', '', '[]', X'000000', X'', X'', b'0')",
    "(3" + ", NULL" * 26 + ")",
]


def source_rows(db: MariaDB, name: str):
    """The rows as PyMySQL reads them, in the shapes PyIceberg gives Basin's columns."""
    with db.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, ti, su, mi, i, iu, bi, bu, d, dw, f, db, dt, dtm, ts, CAST(tm AS CHAR), yr, c, vc,"
                    " tx, en, st, js, bn, vb, bl, bt FROM kinds ORDER BY id")
        names = [c[0] for c in cur.description]
        rows = []
        for row in cur.fetchall():
            r = dict(zip(names, row))
            r["tm"] = r.pop("CAST(tm AS CHAR)")
            r["bu"] = None if r["bu"] is None else Decimal(r["bu"])
            r["bt"] = None if r["bt"] is None else int.from_bytes(r["bt"], "big")
            r["ts"] = None if r["ts"] is None else r["ts"].replace(tzinfo=datetime.timezone.utc)
            if r["dt"] is None and r["id"] == 2:
                r["dt"] = None  # a zero date: NULL in both
            rows.append(r)
        return rows


def test_every_type_loads_equal_to_the_source(tmp_path, mariadb):
    database(mariadb, "kinds_db", KINDS, "SET SESSION sql_mode = ''", f"INSERT INTO kinds VALUES {', '.join(ROWS)}")
    b = lakehouse_for(tmp_path, mariadb, "kinds_db")
    report = b.json("ingest", "shop")
    assert report["rows"] == 3 and [t["table"] for t in report["tables"]] == ["shop.kinds"], report
    assert report["lsn"], report  # where the binary log stood, for change data capture

    show = b.json("table", "show", "shop.kinds")
    types = {c["name"]: c["type"] for c in show["columns"]}
    assert types["bu"] == "decimal(20, 0)" and types["iu"] == "long" and types["ts"] == "timestamptz", types
    assert types["dtm"] == "timestamp" and types["tm"] == "string" and types["bl"] == "binary", types
    table = StaticTable.from_metadata(show["metadata_location"])
    summary = table.current_snapshot().summary
    assert summary["basin.source.binlog"].startswith("binlog.") and summary["basin.source.gtid"], summary
    got = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])
    want = source_rows(mariadb, "kinds_db")
    for g, w in zip(got, want):
        for column, value in w.items():
            if column == "dt" and w["id"] == 2:
                assert g[column] is None  # MySQL's zero date
                continue
            assert g[column] == value, (w["id"], column, g[column], value)
    assert len(got) == len(want)
    assert b.json("query", "SELECT count(*) AS n, sum(i) AS s FROM shop.kinds") == [{"n": 3, "s": -1}]


def test_tables_under_concurrent_writers_load_at_one_point_in_time(tmp_path, mariadb):
    database(mariadb, "bank",
             "CREATE TABLE debits (id BIGINT PRIMARY KEY, amount DECIMAL(10,2)) ENGINE=InnoDB",
             "CREATE TABLE credits (id BIGINT PRIMARY KEY, amount DECIMAL(10,2)) ENGINE=InnoDB")
    stop = threading.Event()
    written = [0]

    def writer():
        with mariadb.connect("bank") as conn, conn.cursor() as cur:
            conn.autocommit(False)
            n = 0
            while not stop.is_set():
                n += 1
                cur.execute("INSERT INTO debits VALUES (%s, %s)", (n, n))
                cur.execute("INSERT INTO credits VALUES (%s, %s)", (n, -n))
                conn.commit()
                written[0] = n

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 200:
            time.sleep(0.05)
        b = lakehouse_for(tmp_path, mariadb, "bank", "readers = 2\n")
        for _ in range(3):
            report = b.json("ingest", "shop")
            debits = b.json("query", "SELECT count(*) AS n, max(id) AS m FROM shop.debits")[0]
            credits = b.json("query", "SELECT count(*) AS n, max(id) AS m FROM shop.credits")[0]
            # Each transaction wrote both tables: read at one instant, they hold the same ids.
            assert debits == credits and debits["n"] == debits["m"] >= 200, (debits, credits, report)
            assert len(b.json("log")) >= 1
    finally:
        stop.set()
        thread.join()


def test_errors_name_what_is_wrong_and_change_nothing(tmp_path, mariadb):
    database(mariadb, "odd",
             "CREATE TABLE places (id INT PRIMARY KEY, name VARCHAR(10), spot POINT)",
             "INSERT INTO places VALUES (1, 'home', POINT(1, 2))")
    b = lakehouse_for(tmp_path, mariadb, "odd")
    log = b.json("log")
    failed = b.run("ingest", "shop", check=False)
    assert failed.returncode != 0 and "odd.places.spot" in failed.stderr and "--skip-unsupported" in failed.stderr, failed.stderr
    wrong = Basin(b.home, {"SHOP_PW": "not-it"}).run("ingest", "shop", check=False)
    assert wrong.returncode != 0 and "password" in wrong.stderr, wrong.stderr
    assert b.json("log") == log and b.json("table", "ls") == []

    report = b.json("ingest", "shop", "--skip-unsupported")
    assert [c["column"] for c in report["skipped_columns"]] == ["odd.places.spot"], report
    assert b.json("query", "SELECT id, name FROM shop.places") == [{"id": 1, "name": "home"}]

    # Change data capture from the binary log is not built yet: said, not skipped in silence.
    (b.home / "basin.toml").write_text((b.home / "basin.toml").read_text() + 'mode = "cdc"\n')
    refused = b.run("source", "ls", check=False)
    assert refused.returncode != 0 and "not built yet" in refused.stderr, refused.stderr


def test_a_load_killed_midway_leaves_nothing(tmp_path, mariadb):
    database(mariadb, "big", "CREATE TABLE facts (id BIGINT PRIMARY KEY, note VARCHAR(40))")
    with mariadb.connect("big") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION max_recursive_iterations = 1000000")
        cur.execute("INSERT INTO facts WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)"
                    " SELECT i, CONCAT('fact number ', i) FROM n")
    b = lakehouse_for(tmp_path, mariadb, "big")
    log = b.json("log")
    proc = subprocess.Popen([BASIN, "--home", str(b.home), "ingest", "shop"], env=b.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert b.json("log") == log and b.json("table", "ls") == []
    report = b.json("ingest", "shop")
    assert report["rows"] == 300000
    assert b.json("query", "SELECT count(DISTINCT id) AS n FROM shop.facts") == [{"n": 300000}]
