"""OpenID Connect JWTs as bearer tokens: minted here with a key of the test's own, verified by
the api against the issuer's JWKS (a file, or a URL served on loopback)."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.cli.manage import issue_token
from services.common.generated.novagrpc.v1 import servers_pb2
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(60)

ISSUER, AUDIENCE = "https://idp.example.test", "nova-grpc"


class Issuer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    def mint(self, *, kid: str = "k1", key: Any = None, algorithm: str = "RS256",
             **overrides: Any) -> str:  # fmt: skip
        now = int(time.time())
        claims = {
            "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "sub": "alice",
            "project_id": "team-jwt", "roles": ["member"], **overrides,
        }  # fmt: skip
        signing = self.key if key is None else key
        return jwt.encode(claims, signing, algorithm=algorithm, headers={"kid": kid})


def oidc_settings(jwks: dict[str, str]) -> dict[str, Any]:
    return {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, **jwks}


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["project_id"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def _alg_none(issuer: Issuer) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
              "project_id": "team-jwt"}  # fmt: skip
    return jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})


def _hmac_with_public_key(issuer: Issuer) -> str:
    # the classic confusion: HS256 "signed" with the public key the JWKS publishes
    pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"k1"}').rstrip(b"=")
    now = int(time.time())
    body = json.dumps({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
                       "project_id": "team-jwt"}).encode()  # fmt: skip
    payload = base64.urlsafe_b64encode(body).rstrip(b"=")
    import hmac  # noqa: PLC0415

    signature = hmac.new(pem, header + b"." + payload, "sha256").digest()
    return b".".join([header, payload, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()


async def test_jwts_from_the_issuer_are_accepted_and_bad_ones_refused(
    sqlite_url: str, tmp_path: Path
) -> None:
    issuer = Issuer()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    settings = oidc_settings({"oidc_jwks_file": str(jwks)})
    async with running_stack(sqlite_url, tmp_path, api=settings) as stack:
        await wait_for_compute(sqlite_url)
        _, own_token = issue_token(sqlite_url, "team-jwt")
        mine = (await stack.servers_as(own_token).CreateServer(create(), timeout=5)).server_ids
        listing = servers_pb2.ListServersRequest()
        # a good JWT acts in the project its claim names
        found = await stack.servers_as(issuer.mint()).ListServers(listing, timeout=5)
        assert [s.id for s in found.servers] == list(mine)
        now = int(time.time())
        refused = {
            "expired": issuer.mint(exp=now - 120, iat=now - 600),
            "wrong audience": issuer.mint(aud="someone-else"),
            "wrong issuer": issuer.mint(iss="https://evil.example.test"),
            "unknown key id": issuer.mint(kid="k2"),
            "signed by another key": issuer.mint(key=issuer.stranger),
            "alg none": _alg_none(issuer),
            "tampered payload": _tampered(issuer.mint()),
            "HS256 with the public key": _hmac_with_public_key(issuer),
            "no project claim": issuer.mint(project_id=""),
        }
        codes = {
            name: await code_of(stack.servers_as(token).ListServers(listing, timeout=5))
            for name, token in refused.items()
        }
        assert codes == dict.fromkeys(refused, grpc.StatusCode.UNAUTHENTICATED)
        # within the allowed clock skew (30 s), a just-expired token still passes
        fresh = issuer.mint(exp=now - 5, iat=now - 300)
        assert await code_of(stack.servers_as(fresh).ListServers(listing, timeout=5)) == (
            grpc.StatusCode.OK
        )
        # roles come from the roles claim: a reader only reads
        reader = stack.servers_as(issuer.mint(roles=["reader"]))
        assert await code_of(reader.ListServers(listing, timeout=5)) == grpc.StatusCode.OK
        assert await code_of(reader.CreateServer(create(), timeout=5)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )


@pytest.fixture
def jwks_server(tmp_path: Path) -> Iterator[tuple[str, Issuer, list[int]]]:
    issuer, fetches = Issuer(), [0]
    body = json.dumps(issuer.jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches[0] += 1
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks", issuer, fetches
    server.shutdown()
    server.server_close()


async def test_the_jwks_is_fetched_from_the_issuer_and_cached(
    sqlite_url: str, tmp_path: Path, jwks_server: tuple[str, Issuer, list[int]]
) -> None:
    url, issuer, fetches = jwks_server
    settings = oidc_settings({"oidc_jwks_url": url})
    async with running_stack(sqlite_url, tmp_path, api=settings) as stack:
        listing = servers_pb2.ListServersRequest()
        for roles in (["member"], ["member", "admin"], ["reader"]):  # three distinct tokens
            token = issuer.mint(roles=roles)
            assert await code_of(stack.servers_as(token).ListServers(listing, timeout=5)) == (
                grpc.StatusCode.OK
            )
        assert fetches[0] == 1
