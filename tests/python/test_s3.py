"""The S3 path against a real S3-protocol server (moto) on loopback: a lakehouse whose
warehouse is a bucket, an import from an s3:// object, SQL over it, and PyIceberg reading
the same table through the S3 API; PyIceberg without keys reading and writing through the
Iceberg REST catalog with requests Basin signs (remote signing); and object triggers on S3
buckets, fed by listing and by event-notification webhooks."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import botocore
import botocore.config
import botocore.exceptions
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.table import StaticTable

from conftest import BASIN, Basin, start_server, wait_for

KEYS = {"BASIN_S3_ACCESS_KEY_ID": "testing", "BASIN_S3_SECRET_ACCESS_KEY": "testing", "BASIN_S3_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(env: dict | None = None):
    """moto's S3 server on a free loopback port: (its endpoint, the process)."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
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
    return endpoint, server


@pytest.fixture
def s3_endpoint():
    endpoint, server = start_moto()
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

    # Partition values are percent-encoded into the keys (`city=new%20york`): read back whole.
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("trip,city,fare\n1,new york,10.00\n2,new york,5.50\n3,a/b 100%,1.25\n")
    b("import", str(spaced), "--table", "rides.by_city", "--partition-by", "city")
    listed = s3.list_objects_v2(Bucket="lake", Prefix="warehouse/rides/")
    assert any("%20" in o["Key"] for o in listed.get("Contents", [])), listed
    out = b("query", "SELECT city, sum(fare) AS fares FROM rides.by_city GROUP BY city ORDER BY city", "--format", "csv")
    assert out.splitlines() == ["city,fares", "a/b 100%,1.25", "new york,15.50"]

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


def test_add_files_from_s3_in_place(tmp_path, s3_endpoint):
    """Objects of another bucket, in Hive folders, added to a table of an S3 warehouse where
    they lie: read with their partition values, pruned by PyIceberg, never deleted."""
    import io

    import pyarrow as pa

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    for bucket in ("lake", "old-lake", "elsewhere"):
        s3.create_bucket(Bucket=bucket)

    def put(bucket, key, users):
        body = io.BytesIO()
        pq.write_table(pa.table({"user": pa.array(users, pa.int64()), "url": [f"/{u}" for u in users]}), body)
        s3.put_object(Bucket=bucket, Key=key, Body=body.getvalue())

    for year in (2023, 2024):
        put("old-lake", f"clicks/year={year}/part-0.parquet", [year, year + 1])
    s3.put_object(Bucket="old-lake", Key="clicks/_SUCCESS", Body=b"")
    put("elsewhere", "clicks/year=2024/part-9.parquet", [9])
    put("old-lake", "clicks2/year=2024/part-0.parquet", [99])  # beside the folder, not in it
    home = tmp_path / "lh"
    home.mkdir()
    (home / "basin.toml").write_text(f'[s3]\nendpoint = "{s3_endpoint}"\npath_style = true\n'
                                     '[warehouse]\nexternal_locations = ["s3://old-lake/clicks"]\n')
    subprocess.run([BASIN, "init", str(home), "--warehouse", "s3://lake/warehouse"], check=True,
                   capture_output=True, env={**os.environ, **KEYS})
    b = Basin(home, KEYS)

    report = b.json("table", "add-files", "web.clicks", "s3://old-lake/clicks")
    assert (report["files"], report["rows"], report["partitioned_by"]) == (2, 4, ["year"]), report
    out = b("query", "SELECT year, sum(user) AS s FROM web.clicks GROUP BY year ORDER BY year", "--format", "csv")
    assert out.splitlines() == ["year,s", "2023,4047", "2024,4049"]
    put("old-lake", "clicks/year=2025/part-0.parquet", [1])
    b("table", "add-files", "web.clicks", "s3://old-lake/clicks/year=2025/*.parquet")
    assert b.json("query", "SELECT count(*) AS n FROM web.clicks WHERE year = 2025") == [{"n": 1}]

    # Another bucket, not named in external_locations, is refused.
    refused = b.run("table", "add-files", "web.clicks", "s3://elsewhere/clicks/", check=False)
    assert refused.returncode != 0 and "external_locations" in refused.stderr, refused.stderr

    table = StaticTable.from_metadata(b.json("table", "show", "web.clicks")["metadata_location"], properties={
        "s3.endpoint": s3_endpoint, "s3.access-key-id": "testing", "s3.secret-access-key": "testing",
        "s3.region": "us-east-1",
    })
    assert table.scan().to_arrow().num_rows == 5
    assert [t.file.file_path for t in table.scan(row_filter="year = 2024").plan_files()] == \
        ["s3://old-lake/clicks/year=2024/part-0.parquet"]
    b("gc")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="old-lake")["Contents"]]
    assert sorted(keys) == ["clicks/_SUCCESS", "clicks/year=2023/part-0.parquet",
                            "clicks/year=2024/part-0.parquet", "clicks/year=2025/part-0.parquet",
                            "clicks2/year=2024/part-0.parquet"]


def test_gc_on_s3_deletes_only_what_no_commit_reads(tmp_path, s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    # What a killed write left: a data file no commit names (S3 keeps no older timestamps,
    # so the test waits out the shortest grace period), and an object that is no table file.
    s3.put_object(Bucket="lake", Key="warehouse/rides/orphan.parquet", Body=b"PAR1 left by a killed import")
    s3.put_object(Bucket="lake", Key="warehouse/rides/README.txt", Body=b"not a table file")
    left = time.time()
    home = tmp_path / "lh"
    home.mkdir()
    (home / "basin.toml").write_text(f'[s3]\nendpoint = "{s3_endpoint}"\npath_style = true\n')
    subprocess.run([BASIN, "init", str(home), "--warehouse", "s3://lake/warehouse"], check=True,
                   capture_output=True, env={**__import__("os").environ, **KEYS})
    b = Basin(home, KEYS)
    (tmp_path / "trips.csv").write_text("trip,fare\n1,12.40\n2,30.00\n")
    b("import", str(tmp_path / "trips.csv"), "--table", "rides.trips")
    young = b.json("gc", "--grace", "1m")
    assert young["files_removed"] == 0 and young["files_too_young"] == 1, young
    time.sleep(max(0.0, 61 - (time.time() - left)))
    report = b.json("gc", "--grace", "1m")
    assert report["files_removed"] == 1 and report["removed_sample"] == ["s3://lake/warehouse/rides/orphan.parquet"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="warehouse/")["Contents"]}
    assert "warehouse/rides/orphan.parquet" not in keys and "warehouse/rides/README.txt" in keys
    assert report["files_reachable"] == len([k for k in keys if k.endswith((".parquet", ".avro", ".json"))])
    out = b("query", "SELECT sum(fare) AS fares FROM rides.trips", "--format", "csv")
    assert out.splitlines() == ["fares", "42.40"]


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


LOADERS = '''
import basin


@basin.python("3.11", timeout="10s")
@basin.on_object(bucket="incoming", suffix=".csv", to="raw.trips", batch_size=10)
def load(event, context):
    print("loading", event["key"], "from", event["source"])
    return context.read_table()


@basin.python("3.11", timeout="10s")
@basin.on_object(bucket="hooked", suffix=".csv", to="raw.hooked")
def hooked(event, context):
    return context.read_table()
'''


def notification(event_name, key, etag):
    """An S3 event notification, as S3 (ObjectCreated:Put) or MinIO (s3:ObjectCreated:Put)
    sends it: the key URL-encoded."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": event_name,
        "eventTime": "2026-11-22T10:00:00.000Z",
        "s3": {"bucket": {"name": "drop"},
               "object": {"key": urllib.parse.quote(key), "size": 30, "eTag": etag.strip('"')}},
    }]}).encode()


def test_bucket_triggers_on_s3_poll_and_webhook(tmp_path, s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket="drop")

    def put(key, i):
        body = f"trip,fare\n{2 * i},1.50\n{2 * i + 1},2.25\n".encode()
        return s3.put_object(Bucket="drop", Key=key, Body=body)["ETag"]

    home = tmp_path / "lh"
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "loaders.py").write_text(LOADERS)
    b = Basin(home, KEYS)
    subprocess.run([BASIN, "init", str(home)], check=True, capture_output=True, env=b.env)
    (home / "basin.toml").write_text(
        f'[s3]\nendpoint = "{s3_endpoint}"\npath_style = true\n\n'
        '[buckets.incoming]\nurl = "s3://drop/incoming/"\npoll_seconds = 0.5\n\n'
        '[buckets.hooked]\nurl = "s3://drop/hooked"\npoll_seconds = 3600\n')
    b("deploy", str(functions))

    def rows(table):
        out = b.run("query", f"SELECT count(*) AS n, count(DISTINCT trip) AS trips FROM raw.{table}",
                    "--format", "json", check=False)
        return json.loads(out.stdout)[0] if out.returncode == 0 else {"n": 0, "trips": 0}

    put("incoming/2026/a.csv", 0)  # landed while Basin was down
    put("incoming/2026/b.csv", 1)
    base, server = start_server(b, "--no-auth")
    try:
        local = tmp_path / "c.csv"
        local.write_text("trip,fare\n4,1.50\n5,2.25\n")
        b("put", str(local), "incoming/2026/c.csv")  # basin put into an S3 bucket: one PUT
        put("incoming/notes.txt", 3)  # not a .csv: no event
        wait_for(lambda: rows("trips") == {"n": 6, "trips": 6})

        # The webhook: the hooked bucket is listed once an hour, so only a notification
        # brings these in soon.
        etag = put("hooked/with space.csv", 10)
        request = urllib.request.Request(f"{base}/api/v1/webhooks/s3", method="POST",
                                         data=notification("ObjectCreated:Put", "hooked/with space.csv", etag),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request) as response:
            assert json.loads(response.read()) == {"events": 1, "queued": 1}
        minio = notification("s3:ObjectCreated:Put", "hooked/with space.csv", etag)
        with urllib.request.urlopen(urllib.request.Request(request.full_url, data=minio, method="POST",
                                                           headers=request.headers)) as response:
            assert json.loads(response.read()) == {"events": 1, "queued": 0}  # the same object version
        wait_for(lambda: rows("hooked") == {"n": 2, "trips": 2})
    finally:
        server.kill()
        server.wait()

    # A restart lists again from the watermark: nothing new, nothing twice.
    base, server = start_server(b, "--no-auth")
    try:
        put("incoming/2026/d.csv", 4)
        wait_for(lambda: rows("trips") == {"n": 8, "trips": 8})
    finally:
        server.kill()
        server.wait()
    events = b.json("events", "ls", "--function", "load")
    assert sorted(e["payload"]["key"] for e in events) == ["2026/a.csv", "2026/b.csv", "2026/c.csv", "2026/d.csv"]
    assert {(e["state"], e["payload"]["source"]) for e in events} == {("succeeded", "s3-poll")}
    hooked = b.json("events", "ls", "--function", "hooked")
    assert [(e["payload"]["key"], e["payload"]["source"]) for e in hooked] == [("with space.csv", "s3-webhook")]
    first = next(e for e in events if e["payload"]["key"] == "2026/a.csv")
    assert "loading 2026/a.csv from s3-poll" in b("events", "show", first["id"])  # the handler's own line


@pytest.fixture
def s3_checking_keys():
    """moto with its IAM checks on: every request must be signed with a key it issued (the
    first three, unsigned, make that key). Returns the endpoint and Basin's keys."""
    endpoint, server = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x",
                           region_name="us-east-1")
        iam.create_user(UserName="basin")
        iam.put_user_policy(UserName="basin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="basin")["AccessKey"]
        keys = {"BASIN_S3_ACCESS_KEY_ID": key["AccessKeyId"],
                "BASIN_S3_SECRET_ACCESS_KEY": key["SecretAccessKey"], "BASIN_S3_REGION": "us-east-1"}
        yield endpoint, keys
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_engines_read_and_write_through_basins_signatures(tmp_path, s3_checking_keys):
    """An engine without S3 keys asks for remote signing: PyIceberg reads a table in the
    bucket with requests Basin signs; a writer's signature makes new objects, never replaces
    one; what Basin does not sign (another bucket, a delete, a reader's write) is refused."""
    endpoint, keys = s3_checking_keys
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=keys["BASIN_S3_ACCESS_KEY_ID"],
                      aws_secret_access_key=keys["BASIN_S3_SECRET_ACCESS_KEY"], region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    s3.create_bucket(Bucket="private")
    s3.put_object(Bucket="private", Key="secret.txt", Body=b"not for engines")
    home = tmp_path / "lh"
    home.mkdir()
    (home / "basin.toml").write_text(f'[s3]\nendpoint = "{endpoint}"\npath_style = true\n')
    subprocess.run([BASIN, "init", str(home), "--warehouse", "s3://lake/wh"], check=True,
                   capture_output=True, env={**os.environ, **keys})
    b = Basin(home, keys)
    (tmp_path / "trips.csv").write_text("trip,fare\n1,12.40\n2,30.00\n")
    b("import", str(tmp_path / "trips.csv"), "--table", "rides.trips")
    data_file = next(o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="wh/rides/")["Contents"]
                     if o["Key"].endswith(".parquet"))
    # The server checks signatures: an unsigned read of the table's file is refused.
    anonymous = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                             config=botocore.config.Config(signature_version=botocore.UNSIGNED))
    with pytest.raises(botocore.exceptions.ClientError):
        anonymous.get_object(Bucket="lake", Key=data_file)

    reader = b("token", "create", "--role", "reader").strip()
    writer = b("token", "create", "--role", "writer").strip()
    base, proc = start_server(b)
    try:
        def catalog(token, signing=True):
            extra = {"header.X-Iceberg-Access-Delegation": "remote-signing"} if signing else {}
            return load_catalog("basin", type="rest", uri=base, token=token, **extra)

        # Without asking, the table's config names no signer (clients bring their own keys).
        plain = catalog(reader, signing=False).load_table("rides.trips")
        assert "s3.signer" not in plain.io.properties and "s3.access-key-id" not in plain.io.properties
        table = catalog(reader).load_table("rides.trips")
        assert table.io.properties["s3.remote-signing-enabled"] == "true"
        assert sorted(table.scan().to_arrow().column("trip").to_pylist()) == [1, 2]

        def send(signed, method="GET", data=None):
            """The request Basin signed, sent as signed."""
            headers = {"Content-Type": "application/octet-stream",
                       **{k: ", ".join(v) for k, v in signed["headers"].items()}}
            return urllib.request.urlopen(urllib.request.Request(signed["uri"], method=method, data=data,
                                                                 headers=headers)).read()

        def sign(token, method, uri):
            request = urllib.request.Request(f"{base}/v1/aws/s3/sign", method="POST", data=json.dumps(
                {"region": "us-east-1", "method": method, "uri": uri, "headers": {}}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request) as response:
                    return response.status, json.load(response)
            except urllib.error.HTTPError as e:
                return e.code, json.load(e)

        status, signed = sign(reader, "GET", f"{endpoint}/lake/{data_file}")
        assert status == 200 and signed["headers"]["authorization"][0].startswith("AWS4-HMAC-SHA256 "), signed
        # The signature is good for that request, and only for it.
        assert send(signed).startswith(b"PAR1")
        for method, uri, says in [
            ("GET", f"{endpoint}/private/secret.txt", "is not the warehouse's"),
            ("GET", f"{endpoint}/lake/outside.txt", "outside the warehouse"),
            ("DELETE", f"{endpoint}/lake/{data_file}", "basin gc"),
            ("PUT", f"{endpoint}/lake/{data_file}?acl", "not a read or write"),
            ("GET", f"http://127.0.0.1:1/lake/{data_file}", "endpoint"),
        ]:
            status, body = sign(writer, method, uri)
            assert status == 403 and says in body["error"]["message"], (method, uri, body)
        # A writer's PUT makes new objects only: one over a file a commit reads is refused by
        # the store (the signature carries If-None-Match: *).
        status, signed = sign(writer, "PUT", f"{endpoint}/lake/{data_file}")
        assert status == 200 and signed["headers"]["if-none-match"] == ["*"], signed
        with pytest.raises(urllib.error.HTTPError) as replaced:
            send(signed, "PUT", b"garbage")
        assert replaced.value.code == 412
        # A reader's signature does not write; a writer's makes a new object.
        status, body = sign(reader, "PUT", f"{endpoint}/lake/wh/rides/new.parquet")
        assert status == 403 and "needs a writer" in body["error"]["message"], body
        status, signed = sign(writer, "PUT", f"{endpoint}/lake/wh/rides/new.parquet")
        assert status == 200, signed
        send(signed, "PUT", b"PAR1 new")
        assert s3.get_object(Bucket="lake", Key="wh/rides/new.parquet")["Body"].read() == b"PAR1 new"
        status, _ = sign("", "GET", f"{endpoint}/lake/{data_file}")
        assert status == 401
        # A token with grants of its own reaches only its tables' files, on any branch that
        # holds the table (dev shares main's files).
        riders = b("token", "create", "--name", "riders", "--grant", "read:rides.*@dev").strip()
        status, body = sign(riders, "GET", f"{endpoint}/lake/{data_file}")
        assert status == 403, body  # no dev yet: rides.trips is nowhere riders may read
        b("branch", "create", "dev")
        others = b("token", "create", "--name", "others", "--grant", "write:sandbox.*").strip()
        status, signed = sign(riders, "GET", f"{endpoint}/lake/{data_file}")
        assert status == 200, signed
        for token, method, uri, why in [
            # others may not read rides.*: the file is no table's it may see (nor named to it).
            (others, "GET", f"{endpoint}/lake/{data_file}", "may not read files of no table"),
            (riders, "PUT", f"{endpoint}/lake/{data_file}", "needs a writer"),
            # Not in a folder Basin named for a table: only a grant on every table reaches it.
            (others, "PUT", f"{endpoint}/lake/wh/sandbox/loose.parquet", "no table"),
        ]:
            status, body = sign(token, method, uri)
            assert status == 403 and why in body["error"]["message"], (uri, body)
        assert s3.get_object(Bucket="lake", Key=data_file)["Body"].read().startswith(b"PAR1")
    finally:
        proc.kill()
        proc.wait()
