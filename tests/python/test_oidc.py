"""Signing in with an OpenID Connect issuer: a local issuer started here (its own RSA key, a
JWKS endpoint) signs tokens; `basin serve` with [auth.oidc] accepts a valid one on the HTTP
API, Iceberg REST and Postgres (as the password), with the [[grants]] of its subject's groups,
and refuses expired, wrong-audience, wrong-issuer, badly signed, unknown-`kid`, HS256 and
`alg=none` tokens."""

import base64
import hashlib
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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
    """An OIDC issuer's parts Basin meets: its JWKS endpoint and the tokens it signs, and for
    the console's sign-in an authorization endpoint (which signs `ana` in at once and sends
    the browser back with a code) and a token endpoint (which checks the PKCE verifier
    against the code's challenge before it answers an ID token for the client and an access
    token for Basin)."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self.key.public_key().public_numbers()
        jwks = json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
                                     "n": number(public.n), "e": number(public.e)}]}).encode()
        issuer = self
        self.codes = {}  # code -> the authorization request's parameters
        self.exchanges = []  # the token endpoint's requests

        class Keys(BaseHTTPRequestHandler):
            def answer(self, status, body, headers=()):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/authorize":
                    return self.answer(200, jwks)
                asked = dict(urllib.parse.parse_qsl(url.query))
                code = secrets.token_urlsafe(16)
                issuer.codes[code] = asked
                back = f"{asked['redirect_uri']}?" + urllib.parse.urlencode({"code": code, "state": asked["state"]})
                self.answer(302, b"", [("location", back)])

            def do_POST(self):
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["content-length"])).decode()))
                issuer.exchanges.append(form)
                asked = issuer.codes.pop(form.get("code"), None)
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                if (asked is None or form.get("grant_type") != "authorization_code"
                        or asked["code_challenge_method"] != "S256" or b64(digest) != asked["code_challenge"]
                        or form.get("redirect_uri") != asked["redirect_uri"] or form.get("client_id") != asked["client_id"]):
                    return self.answer(400, json.dumps({"error": "invalid_grant"}).encode())
                self.answer(200, json.dumps({"token_type": "Bearer",
                                             "id_token": issuer.token(aud=asked["client_id"]),
                                             "access_token": issuer.token()}).encode())

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
client_id = "basin-console"
authorization_url = "{issuer.url}/authorize"
token_url = "{issuer.url}/token"

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


def test_the_console_signs_in_with_the_issuer(lakehouse, issuer, signed_in):
    """Headless Chromium clicks Sign in: the issuer sends it back with a code, Basin trades
    the code (checked against the PKCE challenge) for the issuer's access token, and the page
    then acts as ana, with the analysts' grants."""
    base, _ = signed_in
    status, config = send("GET", f"{base}/api/v1/auth/config")
    assert status == 200 and config["sign_in"]["client_id"] == "basin-console", config
    drive = Path(__file__).resolve().parent.parent / "console" / "signin.cjs"
    modules = os.environ.get("BASIN_NODE_MODULES", str(Path.home() / ".cache" / "basin" / "node" / "node_modules"))
    out = subprocess.run(["node", str(drive), base + "/"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "BASIN_NODE_MODULES": modules})
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["who"] == "reader · ana", seen
    assert seen["schema"] == ["sales.orders"], seen
    assert seen["url"] == base + "/", seen  # the code is gone from the address bar
    assert all(u.startswith(issuer.url + "/authorize?") for u in seen["elsewhere"]), seen["elsewhere"]
    assert len(issuer.exchanges) == 1 and issuer.codes == {}  # one code, traded once
    # A code cannot be traded twice, and a made-up one not at all.
    status, answer = send("POST", f"{base}/api/v1/auth/sign-in", None,
                          {"code": "made-up", "code_verifier": "x" * 43, "redirect_uri": base + "/"})
    assert status == 400 and "did not take the sign-in code: invalid_grant" in answer["error"]["message"], answer
    entries = lakehouse.json("audit", "ls")
    assert any(e["principal"] == "ana" and e["action"] == "sign in" and e["outcome"] == "ok" for e in entries), entries
