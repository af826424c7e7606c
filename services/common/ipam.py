"""IP address management, pure: which address a new port gets on a subnet.

The database makes it atomic (the unique (network, address) key on ``ports`` and a row lock
on the network while a transaction allocates from it); this module only decides.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network

from services.common.errors import AlreadyExists, InvalidArgument, QuotaExceeded

# OpenStack's MAC prefix (fa:16:3e): guests and tools recognise a cloud NIC by it.
MAC_PREFIX = "fa:16:3e"

Pool = tuple[IPv4Address, IPv4Address]


class NetworkFull(QuotaExceeded):
    """No address left in a network's allocation pools (RESOURCE_EXHAUSTED)."""

    def __init__(self, network_name: str, *, size: int, field: str = "networks") -> None:
        super().__init__(field, limit=size, in_use=size, requested=1)
        self.message = (
            f"{field}: network {network_name!r} has no free address ({size} of {size} in use)"
        )
        self.args = (self.message,)


def default_pools(cidr: IPv4Network, gateway: IPv4Address | None) -> tuple[Pool, ...]:
    """Every host address of the subnet except the gateway (Neutron's default)."""
    hosts = _host_range(cidr)
    if hosts is None:
        return ()
    first, last = hosts
    if gateway is None or not first <= gateway <= last:
        return ((first, last),)
    pools: list[Pool] = []
    if gateway > first:
        pools.append((first, gateway - 1))
    if gateway < last:
        pools.append((gateway + 1, last))
    return tuple(pools)


def pool_size(pools: Iterable[Pool]) -> int:
    return sum(int(last) - int(first) + 1 for first, last in pools)


def check_fixed_ip(
    field: str, address: IPv4Address, *, cidr: IPv4Network, gateway: IPv4Address | None
) -> None:
    """A requested address must be a host address of the subnet and not its gateway."""
    hosts = _host_range(cidr)
    if hosts is None or not hosts[0] <= address <= hosts[1]:
        raise InvalidArgument(field, f"{address} is not a host address of subnet {cidr}")
    if address == gateway:
        raise InvalidArgument(field, f"{address} is the gateway of subnet {cidr}")


class AddressPool:
    """Free addresses of one network during one transaction: ``used`` is what the database
    holds (read under the network's row lock), and every address taken here is added to it.
    Kept as integers: an IPv4Address hashes through ``hex()``, which a create of 100 servers
    on a network with thousands of ports paid thousands of times (profiled)."""

    def __init__(
        self,
        *,
        name: str,
        cidr: IPv4Network,
        gateway: IPv4Address | None,
        pools: Sequence[Pool],
        used: Iterable[IPv4Address],
    ) -> None:
        self._name = name
        self._cidr = cidr
        self._gateway = gateway
        self._pools = tuple(pools)
        self._used = {int(a) for a in used}
        self._cursor = self._scan()

    def take(self, requested: IPv4Address | None = None, *, field: str = "networks") -> IPv4Address:
        """The requested address if free, else the lowest free one of the pools."""
        if requested is not None:
            check_fixed_ip(field, requested, cidr=self._cidr, gateway=self._gateway)
            if int(requested) in self._used:
                raise AlreadyExists(
                    f"{field}: address {requested} is in use on network {self._name!r}",
                    field=field,
                )
            self._used.add(int(requested))
            return requested
        for value in self._cursor:
            if value not in self._used:
                self._used.add(value)
                return IPv4Address(value)
        raise NetworkFull(self._name, size=pool_size(self._pools), field=field)

    def _scan(self) -> Iterator[int]:
        # One pass over the pools for the whole transaction: addresses below the cursor were
        # either used or handed out already (a requested address is marked used, so the scan
        # skips it when it gets there).
        for first, last in self._pools:
            yield from range(int(first), int(last) + 1)


def new_mac() -> str:
    tail = secrets.token_bytes(3)
    return MAC_PREFIX + "".join(f":{b:02x}" for b in tail)


def _host_range(cidr: IPv4Network) -> tuple[IPv4Address, IPv4Address] | None:
    if cidr.prefixlen >= 31:  # point-to-point; no room for a gateway and hosts
        return None
    return cidr.network_address + 1, cidr.broadcast_address - 1
