"""The README's grpcurl examples for security groups, against the running api."""

from __future__ import annotations

import json

import pytest

from tests.functional.conftest import System
from tests.functional.test_grpcurl import grpcurl

pytestmark = pytest.mark.timeout(90)


def test_security_groups_with_grpcurl(system: System) -> None:
    api = system.api
    auth = f"authorization: Bearer {system.token}"

    def call(method: str, body: dict[str, object]) -> dict[str, object]:
        done = grpcurl("-H", auth, "-d", json.dumps(body), api.address,
                       f"novagrpc.v1.SecurityGroups/{method}")  # fmt: skip
        assert done.returncode == 0, done.stderr
        reply: dict[str, object] = json.loads(done.stdout)
        return reply

    assert "novagrpc.v1.SecurityGroups" in grpcurl(api.address, "list").stdout.split()
    group = call("CreateSecurityGroup", {"name": "curl-web", "description": "http"})
    rule = call("CreateSecurityGroupRule", {
        "security_group_id": "curl-web", "direction": "ingress", "protocol": "tcp",
        "port_range_min": 8080, "remote_ip_prefix": "10.0.0.0/8",
    })  # fmt: skip
    assert (rule["security_group_id"], rule["port_range_max"]) == (group["id"], 8080)
    listed = call("ListSecurityGroups", {})["security_groups"]
    assert {"default", "curl-web"} <= {g["name"] for g in listed}  # type: ignore[attr-defined, index]

    bad = grpcurl("-H", auth, "-d", json.dumps({"security_group_id": "curl-web",
                                                "direction": "ingress", "protocol": "gre"}),
                  api.address, "novagrpc.v1.SecurityGroups/CreateSecurityGroupRule")  # fmt: skip
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr and "protocol" in bad.stderr
    call("DeleteSecurityGroupRule", {"id": rule["id"]})
    call("DeleteSecurityGroup", {"id": "curl-web"})
