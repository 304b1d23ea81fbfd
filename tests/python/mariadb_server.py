"""A real MariaDB server for the MySQL tests, started here: its own data folder, a free
loopback port, the binary log on in rows, a password login over TCP for a user with a
replica's grants."""

import datetime
import os
import shutil
import socket
import subprocess
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import pymysql
import pytest

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
        cur.execute("GRANT SELECT, RELOAD, REPLICATION CLIENT, REPLICATION SLAVE ON *.* TO 'basin'@'127.0.0.1'")
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
            rows.append(r)
        return rows


def assert_rows_equal(got: list, want: list):
    """Basin's rows (PyIceberg's dicts) equal the source's, row by row, by id."""
    got = sorted(got, key=lambda r: r["id"])
    for g, w in zip(got, want):
        for column, value in w.items():
            if column == "dt" and w["id"] == 2:
                assert g[column] is None  # MySQL's zero date
                continue
            assert g[column] == value, (w["id"], column, g[column], value)
    assert len(got) == len(want), (len(got), len(want))
