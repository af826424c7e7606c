"""The identity an internal certificate's SAN URI names."""

from __future__ import annotations

import pytest

from services.common.identity import ServiceIdentity, ServiceRole, identity_from_uris

pytestmark = pytest.mark.timeout(5)


def test_uris_round_trip() -> None:
    for identity in (
        ServiceIdentity(ServiceRole.API),
        ServiceIdentity(ServiceRole.CONDUCTOR),
        ServiceIdentity(ServiceRole.COMPUTE, "node-1.example"),
    ):
        assert ServiceIdentity.from_uri(identity.uri) == identity
    assert ServiceIdentity(ServiceRole.COMPUTE, "h1").uri == "urn:nova-grpc:compute:h1"


@pytest.mark.parametrize(
    "uri",
    [
        "urn:nova-grpc:compute",  # a compute without its host
        "urn:nova-grpc:compute:",
        "urn:nova-grpc:compute:../etc",
        "urn:nova-grpc:api:somehost",  # only computes name a host
        "urn:nova-grpc:admin",
        "spiffe://nova-grpc/api",
        "",
    ],
)
def test_malformed_or_foreign_uris_name_nobody(uri: str) -> None:
    assert ServiceIdentity.from_uri(uri) is None


def test_a_certificate_naming_two_identities_is_nobody() -> None:
    api, compute = "urn:nova-grpc:api", "urn:nova-grpc:compute:h1"
    assert identity_from_uris([api, compute]) is None
    assert identity_from_uris([api, api, "https://example.org"]) == ServiceIdentity(ServiceRole.API)
    assert identity_from_uris([]) is None
