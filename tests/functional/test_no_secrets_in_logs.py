"""A full run at DEBUG: passwords, user data, tokens and keys appear in no log line and in no
error message."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest

from services.cli.manage import issue_token
from services.common.generated.novagrpc.v1 import (
    keypairs_pb2,
    keypairs_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from tests.support.auth import Authed
from tests.support.keys import ed25519_public_key
from tests.support.polling import wait_until
from tests.support.processes import ServiceSet

pytestmark = pytest.mark.timeout(120)


def test_secrets_never_reach_logs_or_errors(tmp_path: Path, sqlite_url: str) -> None:
    url = sqlite_url
    _, token = issue_token(url, "demo")
    services = ServiceSet(tmp_path, env={"NOVA_GRPC_LOG_LEVEL": "DEBUG"})
    password = "pw-SECRET-7f3a9c"
    user_data_text = "#!/bin/sh\necho ud-SECRET-42b1\n"
    user_data = base64.b64encode(user_data_text.encode()).decode()
    public_key = ed25519_public_key("key-SECRET-comment")
    errors: list[str] = []
    try:
        api, _conductor, _computes = services.start_all_in_one(url)
        with grpc.insecure_channel(api.address) as channel:
            keys = Authed(keypairs_pb2_grpc.KeypairsStub(channel), token)
            keys.ImportKeypair(
                keypairs_pb2.ImportKeypairRequest(name="k", public_key=public_key), timeout=10
            )
            stub = Authed(servers_pb2_grpc.ServersStub(channel), token)
            reply = stub.CreateServer(
                servers_pb2.CreateServerRequest(
                    name="s", flavor_ref="m1.tiny", image_ref="nova-tiny", key_name="k",
                    user_data=user_data, admin_password=password,
                ),
                timeout=10,
            )  # fmt: skip
            wait_until(
                lambda: (
                    stub.GetServer(
                        servers_pb2.GetServerRequest(id=reply.server_ids[0]), timeout=10
                    ).status
                    != servers_pb2.SERVER_STATUS_BUILD
                ),
                30,
                "the server to leave BUILD",
            )
            bad_requests = [
                servers_pb2.CreateServerRequest(name="x", flavor_ref="m1.tiny",
                    image_ref="nova-tiny", admin_password=password + "\x01"),
                servers_pb2.CreateServerRequest(name="x", flavor_ref="m1.tiny",
                    image_ref="nova-tiny", user_data=user_data + "!!"),
            ]  # fmt: skip
            for request in bad_requests:
                try:
                    stub.CreateServer(request, timeout=10)
                except grpc.RpcError as exc:
                    errors.append(exc.details() or "")  # type: ignore[attr-defined]
            broken = public_key.replace("ssh-ed25519 ", "ssh-ed25519 !")
            bad_key = keypairs_pb2.ImportKeypairRequest(name="k2", public_key=broken)
            try:
                keys.ImportKeypair(bad_key, timeout=10)
            except grpc.RpcError as exc:
                errors.append(exc.details() or "")  # type: ignore[attr-defined]
            wrong = servers_pb2_grpc.ServersStub(channel)
            try:
                wrong.ListServers(
                    servers_pb2.ListServersRequest(), timeout=10,
                    metadata=(("authorization", f"Bearer {token}-tampered"),),
                )  # fmt: skip
            except grpc.RpcError as exc:
                errors.append(exc.details() or "")  # type: ignore[attr-defined]
    finally:
        services.stop()
    logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert "DEBUG" in logs  # the services did log at DEBUG
    assert len(errors) == 4 and all(errors)
    for secret in (password, "ud-SECRET-42b1", user_data, token, "key-SECRET-comment",
                   public_key.split()[1]):  # fmt: skip
        assert secret not in logs, f"{secret[:12]}... in the logs"
        assert not any(secret in e for e in errors), f"{secret[:12]}... in an error"
