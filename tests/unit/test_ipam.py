"""IPAM, pure: default pools, requested and chosen addresses, a full network."""

from __future__ import annotations

from collections.abc import Sequence
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
        probe=ipam.known(used or set()),
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


def test_next_fit_starts_where_the_count_of_ports_points_and_wraps_around_once() -> None:
    """Started at the number of ports (3 of .2-.6 in use, one freed below): the scan asks
    about .5 onwards first, then wraps to the hole at .3; then the network is full."""
    used = {A("10.0.0.2"), A("10.0.0.4"), A("10.0.0.6")}
    asked: list[list[A]] = []

    def probe(candidates: Sequence[A]) -> set[A]:
        listed = list(candidates)
        asked.append(listed)
        return used & set(listed)

    addresses = ipam.AddressPool(
        name="net", cidr=N("10.0.0.0/29"), gateway=A("10.0.0.1"),
        pools=((A("10.0.0.2"), A("10.0.0.6")),), probe=probe, start=3,
    )  # fmt: skip
    assert [addresses.take(), addresses.take()] == [A("10.0.0.5"), A("10.0.0.3")]
    assert asked == [[A("10.0.0.5"), A("10.0.0.6"), A("10.0.0.2"), A("10.0.0.3"), A("10.0.0.4")]]
    with pytest.raises(ipam.NetworkFull):
        addresses.take()


def test_probes_grow_and_never_ask_about_more_than_they_need_at_first() -> None:
    """A /16 with 60,000 addresses in use, handed out in order: a create of 100 asks about
    one window of candidates, not about every used address."""
    first, last = A("10.0.0.2"), A("10.0.255.254")
    in_use = 60_000
    asked: list[int] = []

    def probe(candidates: Sequence[A]) -> set[A]:
        listed = list(candidates)
        asked.append(len(listed))
        return {a for a in listed if int(a) - int(first) < in_use}

    addresses = ipam.AddressPool(
        name="big", cidr=N("10.0.0.0/16"), gateway=A("10.0.0.1"),
        pools=((first, last),), probe=probe, start=in_use,
    )  # fmt: skip
    taken = [addresses.take() for _ in range(100)]
    assert taken[0] == A(int(first) + in_use) and len(set(taken)) == 100
    assert asked == [ipam.PROBE_FIRST]
    # and across several pools, the offset counts through them in order
    split = ipam.AddressPool(
        name="split", cidr=N("10.0.0.0/24"), gateway=A("10.0.0.1"),
        pools=((A("10.0.0.10"), A("10.0.0.11")), (A("10.0.0.20"), A("10.0.0.21"))),
        probe=ipam.known(set()), start=3,
    )  # fmt: skip
    assert [split.take() for _ in range(4)] == [
        A("10.0.0.21"), A("10.0.0.10"), A("10.0.0.11"), A("10.0.0.20")
    ]  # fmt: skip
