"""The S3 path against a real S3-protocol server (moto) on loopback: a lakehouse whose
warehouse is a bucket, an import from an s3:// object, SQL over it, and PyIceberg reading
the same table through the S3 API."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from pyiceberg.table import StaticTable

from conftest import BASIN, Basin

KEYS = {"BASIN_S3_ACCESS_KEY_ID": "testing", "BASIN_S3_SECRET_ACCESS_KEY": "testing", "BASIN_S3_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint():
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def test_lakehouse_on_s3(tmp_path, s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="landing/trips.csv",
                  Body=b"trip,city,fare\n1,paris,12.40\n2,oslo,30.00\n3,paris,8.15\n")

    home = tmp_path / "lh"
    home.mkdir()
    (home / "basin.toml").write_text(f'[s3]\nendpoint = "{s3_endpoint}"\npath_style = true\n')
    env = {**KEYS}
    subprocess.run([BASIN, "init", str(home), "--warehouse", "s3://lake/warehouse"], check=True,
                   capture_output=True, env={**__import__("os").environ, **env})
    b = Basin(home, env)

    b("import", "s3://lake/landing/trips.csv", "--table", "rides.trips")
    out = b("query", "SELECT city, sum(fare) AS fares FROM rides.trips GROUP BY city ORDER BY city", "--format", "csv")
    assert out.splitlines() == ["city,fares", "oslo,30.00", "paris,20.55"]

    show = b.json("table", "show", "rides.trips")
    assert show["metadata_location"].startswith("s3://lake/warehouse/rides/")
    listed = s3.list_objects_v2(Bucket="lake", Prefix="warehouse/rides/")
    assert any(o["Key"].endswith(".parquet") for o in listed.get("Contents", []))
    assert not (home / ".basin" / "warehouse").exists(), "no data may land on the local disk"

    table = StaticTable.from_metadata(show["metadata_location"], properties={
        "s3.endpoint": s3_endpoint, "s3.access-key-id": "testing", "s3.secret-access-key": "testing",
        "s3.region": "us-east-1",
    })
    assert sorted(table.scan().to_arrow().column("trip").to_pylist()) == [1, 2, 3]


def test_wrong_s3_endpoint_fails_at_init_with_a_hint(tmp_path):
    home = tmp_path / "lh"
    home.mkdir()
    port = free_port()  # nothing listens here
    (home / "basin.toml").write_text(f'[s3]\nendpoint = "http://127.0.0.1:{port}"\n')
    proc = subprocess.run([BASIN, "init", str(home), "--warehouse", "s3://nope/x"], capture_output=True, text=True,
                          env={**__import__("os").environ, **KEYS})
    assert proc.returncode == 1
    assert "hint:" in proc.stderr
    assert not (home / ".basin" / "config.toml").exists()
