"""`basin ingest` from a real MariaDB server, started here: its own data folder, a free
loopback port, the binary log on, a password login over TCP.

What a full load must show: every type equal to the source row by row (read back by PyIceberg
and `basin query`), all tables in one commit at one point in time (also under concurrent
writers, with several readers), the binary log's position recorded, an unsupported type named
(or left out on request), a bad password or a kill during the load leaving the lakehouse as
it was.
"""

import signal
import subprocess
import threading
import time

from pyiceberg.table import StaticTable

from conftest import BASIN, Basin, wait_for
from mariadb_server import (  # noqa: F401 - mariadb is a fixture
    KINDS, ROWS, assert_rows_equal, database, lakehouse_for, mariadb, source_rows)


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
    assert_rows_equal(table.scan().to_arrow().to_pylist(), source_rows(mariadb, "kinds_db"))
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


def test_a_load_killed_midway_leaves_nothing(tmp_path, mariadb):
    database(mariadb, "big", "CREATE TABLE facts (id BIGINT PRIMARY KEY, note VARCHAR(40))")
    with mariadb.connect("big") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION max_recursive_iterations = 1000000")
        cur.execute("INSERT INTO facts WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)"
                    " SELECT i, CONCAT('fact number ', i) FROM n")
    b = lakehouse_for(tmp_path, mariadb, "big", "readers = 1\n")
    log = b.json("log")
    proc = subprocess.Popen([BASIN, "--home", str(b.home), "ingest", "shop"], env=b.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Killed once it has written its first data file (64k rows in), before its commit.
    deadline = time.monotonic() + 60
    while not any(b.home.rglob("*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the load ended before it could be killed"
    assert b.json("log") == log and b.json("table", "ls") == []
    report = b.json("ingest", "shop")
    assert report["rows"] == 300000
    assert b.json("query", "SELECT count(DISTINCT id) AS n FROM shop.facts") == [{"n": 300000}]


def test_a_large_table_is_read_in_key_ranges_at_one_point_in_time(tmp_path, mariadb):
    database(mariadb, "ledger", "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT) ENGINE=InnoDB")
    with mariadb.connect("ledger") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION max_recursive_iterations = 1000000")
        cur.execute("INSERT INTO accounts WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250000)"
                    " SELECT i, 100 FROM n")
        cur.execute("ANALYZE TABLE accounts")
    stop = threading.Event()
    moved = [0]

    def mover():
        # Moves money between accounts at both ends of the key's span, one transaction each:
        # a load that read its ranges at different instants would not sum to the total.
        with mariadb.connect("ledger") as conn, conn.cursor() as cur:
            conn.autocommit(False)
            n = 0
            while not stop.is_set():
                n += 1
                low, high = 1 + n % 1000, 250000 - n % 1000
                cur.execute("UPDATE accounts SET balance = balance - 7 WHERE id = %s", (low,))
                cur.execute("UPDATE accounts SET balance = balance + 7 WHERE id = %s", (high,))
                conn.commit()
                moved[0] = n

    thread = threading.Thread(target=mover)
    thread.start()
    try:
        wait_for(lambda: moved[0] >= 50, 30)
        b = lakehouse_for(tmp_path, mariadb, "ledger", "readers = 3\n")
        for _ in range(2):
            report = b.json("ingest", "shop")
            (table,) = report["tables"]
            # Three readers, each its range of the key, each range its own files.
            assert table["rows"] == 250000 and table["data_files"] >= 3, report
            assert b.json("query", "SELECT count(DISTINCT id) AS n, sum(balance) AS s FROM shop.accounts") == [
                {"n": 250000, "s": 25000000}]
    finally:
        stop.set()
        thread.join()
