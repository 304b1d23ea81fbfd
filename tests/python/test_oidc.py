"""Signing in with an OpenID Connect issuer: a local issuer started here (its own RSA key, a
JWKS endpoint) signs tokens; `basin serve` with [auth.oidc] accepts a valid one on the HTTP
API, Iceberg REST and Postgres (as the password), with the [[grants]] of its subject's groups,
and refuses expired, wrong-audience, wrong-issuer, badly signed, unknown-`kid`, HS256 and
`alg=none` tokens."""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyiceberg.catalog.rest import RestCatalog

from conftest import send, start_server


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def number(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Issuer:
    """An OIDC issuer's two halves Basin meets: its JWKS endpoint, and tokens it signs."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self.key.public_key().public_numbers()
        jwks = json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
                                     "n": number(public.n), "e": number(public.e)}]}).encode()

        class Keys(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def token(self, key=None, kid="k1", alg="RS256", **claims):
        now = int(time.time())
        body = {"iss": self.url, "aud": "basin", "sub": "ana", "groups": ["analysts"],
                "iat": now, "exp": now + 300, **claims}
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
        if alg == "none":
            return signing + "."
        if alg == "HS256":  # signed with the public key as an HMAC secret: the old confusion
            mac = hmac.HMAC(number(self.key.public_key().public_numbers().n).encode(), hashes.SHA256())
            mac.update(signing.encode())
            return signing + "." + b64(mac.finalize())
        signature = (key or self.key).sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + b64(signature)


@pytest.fixture
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.server.shutdown()


@pytest.fixture
def signed_in(lakehouse, tmp_path, issuer):
    for table, csv in (("sales.orders", "id,amount\n1,10\n2,3\n"), ("hr.salaries", "id,salary\n1,100\n")):
        path = tmp_path / f"{table}.csv"
        path.write_text(csv)
        lakehouse("import", str(path), "--table", table)
    (lakehouse.home / "basin.toml").write_text(f"""
[auth.oidc]
issuer = "{issuer.url}"
audience = "basin"
jwks_url = "{issuer.url}/jwks"
leeway = "5s"

[[grants]]
to = "analysts"
read = ["sales.*"]
""")
    base, proc = start_server(lakehouse, "--pg-listen", "127.0.0.1:0")
    yield base, proc.port
    proc.kill()
    proc.wait()


def test_a_valid_token_works_on_every_door_with_its_groups_grants(lakehouse, issuer, signed_in):
    base, port = signed_in
    token = issuer.token()
    status, tables = send("GET", f"{base}/api/v1/tables", token)
    assert status == 200, tables
    assert [t["table"] for t in tables] == ["sales.orders"], tables
    catalog = RestCatalog("basin", uri=base, warehouse="main", token=token)
    assert catalog.list_namespaces() == [("sales",)]
    assert len(catalog.load_table("sales.orders").scan().to_arrow()) == 2
    with psycopg.connect(host="127.0.0.1", port=port, user="ana", password=token, dbname="main",
                         autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0] == 2
        assert conn.execute("SELECT session_user").fetchone()[0] == "ana"
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM hr.salaries")
    # A subject in no granted group signs in, and sees nothing, not even a branch.
    status, answer = send("GET", f"{base}/api/v1/tables", issuer.token(sub="eve", groups=["guests"]))
    assert status == 404 and "no branch or tag named `main`" in answer["error"]["message"], answer


def test_bad_tokens_are_refused_on_every_door(lakehouse, issuer, signed_in):
    base, port = signed_in
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "expired": issuer.token(exp=int(time.time()) - 3600),
        "wrong audience": issuer.token(aud="someone-else"),
        "wrong issuer": issuer.token(iss="https://evil.example"),
        "bad signature": issuer.token(key=other),
        "unknown kid": issuer.token(kid="k9"),
        "alg none": issuer.token(alg="none"),
        "hs256": issuer.token(alg="HS256"),
    }
    for why, token in bad.items():
        status, answer = send("GET", f"{base}/api/v1/tables", token)
        assert status == 401, (why, answer)
        status, answer = send("GET", f"{base}/v1/main/namespaces", token)
        assert status == 401, (why, answer)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=port, user="x", password=token, dbname="main",
                            connect_timeout=10)
    entries = json.loads(lakehouse("audit", "ls", "--principal", "(unknown token)", "-n", "100",
                                   "--format", "json"))
    assert len([e for e in entries if e["door"] == "postgres"]) == len(bad), entries
    assert any("expired" in e["detail"].lower() for e in entries), entries


def test_a_postgres_connection_ends_when_its_sign_in_token_expires(issuer, signed_in):
    """A JWT is the password at login; the connection it opened ends at the first statement
    after the token expires (its exp plus the 5 s leeway), with a FATAL that says so."""
    _, port = signed_in
    token = issuer.token(exp=int(time.time()) + 2)
    with psycopg.connect(host="127.0.0.1", port=port, user="ana", password=token, dbname="main",
                         autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0] == 2
        time.sleep(8)
        with pytest.raises(psycopg.OperationalError, match="sign-in token this connection logged in with has expired"):
            conn.execute("SELECT count(*) FROM sales.orders")
