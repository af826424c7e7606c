"""IPAM, pure: default pools, requested and chosen addresses, a full network."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

import pytest

from services.common import ipam
from services.common.errors import AlreadyExists, InvalidArgument

pytestmark = pytest.mark.timeout(10)


def test_default_pools_leave_out_network_broadcast_and_gateway() -> None:
    assert ipam.default_pools(N("10.0.0.0/29"), A("10.0.0.1")) == ((A("10.0.0.2"), A("10.0.0.6")),)
    assert ipam.default_pools(N("10.0.0.0/29"), A("10.0.0.4")) == (
        (A("10.0.0.1"), A("10.0.0.3")), (A("10.0.0.5"), A("10.0.0.6")),
    )  # fmt: skip
    assert ipam.default_pools(N("10.0.0.0/29"), None) == ((A("10.0.0.1"), A("10.0.0.6")),)
    assert ipam.pool_size(ipam.default_pools(N("10.0.0.0/23"), A("10.0.0.1"))) == 509


def pool(used: set[A] | None = None) -> ipam.AddressPool:
    return ipam.AddressPool(
        name="net",
        cidr=N("10.0.0.0/29"),
        gateway=A("10.0.0.1"),
        pools=((A("10.0.0.2"), A("10.0.0.6")),),
        used=used or set(),
    )


def test_the_lowest_free_address_first_skipping_used_and_requested_ones() -> None:
    addresses = pool({A("10.0.0.3")})
    assert addresses.take(A("10.0.0.4")) == A("10.0.0.4")
    assert [addresses.take(), addresses.take(), addresses.take()] == [
        A("10.0.0.2"), A("10.0.0.5"), A("10.0.0.6")
    ]  # fmt: skip


def test_a_full_network_is_named_in_the_error() -> None:
    addresses = pool({A(f"10.0.0.{i}") for i in range(2, 7)})
    with pytest.raises(ipam.NetworkFull, match="network 'net' has no free address"):
        addresses.take()


@pytest.mark.parametrize("address", ["10.0.0.0", "10.0.0.7", "10.0.0.1", "10.0.1.2"])
def test_a_requested_address_must_be_a_host_of_the_subnet_and_not_the_gateway(
    address: str,
) -> None:
    with pytest.raises(InvalidArgument, match=r"nics\.fixed_ip"):
        pool().take(A(address), field="nics.fixed_ip")


def test_a_requested_address_in_use_already_exists() -> None:
    addresses = pool({A("10.0.0.5")})
    with pytest.raises(AlreadyExists, match=r"10\.0\.0\.5 is in use on network 'net'"):
        addresses.take(A("10.0.0.5"))


def test_macs_carry_openstacks_prefix_and_differ() -> None:
    macs = {ipam.new_mac() for _ in range(100)}
    assert len(macs) == 100 and all(m.startswith("fa:16:3e:") and len(m) == 17 for m in macs)
