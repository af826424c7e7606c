"""The README's grpcurl examples for external networks and floating addresses, against the
running api (libvirt's test hypervisor: no datapath)."""

from __future__ import annotations

import json

import pytest

from tests.functional.conftest import System
from tests.functional.test_grpcurl import grpcurl

pytestmark = pytest.mark.timeout(90)


def test_floating_ips_with_grpcurl(system: System) -> None:
    api = system.api

    def call(
        service: str, method: str, body: dict[str, object], token: str = ""
    ) -> dict[str, object]:
        auth = f"authorization: Bearer {token or system.token}"
        done = grpcurl("-H", auth, "-d", json.dumps(body), api.address,
                       f"novagrpc.v1.{service}/{method}")  # fmt: skip
        assert done.returncode == 0, done.stderr
        reply: dict[str, object] = json.loads(done.stdout)
        return reply

    listed = grpcurl(api.address, "list").stdout.split()
    assert {"novagrpc.v1.FloatingIPs", "novagrpc.v1.ExternalNetworks"} <= set(listed)
    call("ExternalNetworks", "CreateExternalNetwork", {
        "name": "curl-public", "cidr": "198.51.100.0/24", "bridge": "br-ex",
        "allocation_pools": [{"start": "198.51.100.10", "end": "198.51.100.200"}],
    }, token=system.admin_token)  # fmt: skip
    call("Networks", "CreateNetwork", {"name": "curl-web", "cidr": "10.79.0.0/24"})
    call("ExternalNetworks", "ConnectNetwork",
         {"network_id": "curl-web", "external_network_id": "curl-public"})  # fmt: skip
    made = call("Servers", "CreateServer", {
        "name": "curl-a", "flavor_ref": "m1.tiny", "image_ref": "nova-tiny",
        "networks": ["curl-web"],
    })  # fmt: skip
    server_id = made["server_ids"][0]  # type: ignore[index]
    fip = call("FloatingIPs", "AllocateFloatingIP", {"external_network_id": "curl-public"})
    assert fip["floating_ip_address"] == "198.51.100.10"
    bound = call("FloatingIPs", "AssociateFloatingIP",
                 {"id": "198.51.100.10", "server_id": server_id})  # fmt: skip
    assert bound["server_id"] == server_id and bound["fixed_ip_address"] == "10.79.0.2"
    refused = grpcurl("-H", f"authorization: Bearer {system.token}", "-d",
                      json.dumps({"id": "198.51.100.10"}), api.address,
                      "novagrpc.v1.FloatingIPs/ReleaseFloatingIP")  # fmt: skip
    assert refused.returncode != 0 and "FailedPrecondition" in refused.stderr
    assert "id:" in refused.stderr
    freed = call("FloatingIPs", "DisassociateFloatingIP", {"id": "198.51.100.10"})
    assert "server_id" not in freed
    call("FloatingIPs", "ReleaseFloatingIP", {"id": "198.51.100.10"})
    assert call("FloatingIPs", "ListFloatingIPs", {}) == {}
