"""IP address management, pure: which address a new port gets on a subnet.

The database makes it atomic (the unique (network, address) key on ``ports`` and a row lock
on the network while a transaction allocates from it); this module only decides.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network
from itertools import islice

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


# Which of these candidate addresses are in use (the database's answer, under the lock).
Probe = Callable[[Sequence[IPv4Address]], set[IPv4Address]]

# Candidates asked about in one probe: the first probe, and the most (each doubles).
PROBE_FIRST, PROBE_MOST = 128, 4096


def known(used: Iterable[IPv4Address]) -> Probe:
    """A probe that answers from addresses known in full."""
    values = set(used)
    return lambda candidates: {a for a in candidates if a in values}


class AddressPool:
    """Free addresses of one network during one transaction. ``probe`` says which candidate
    addresses the database holds (asked under the network's row lock), in windows that grow;
    every address taken here is remembered too. The scan starts ``start`` addresses into the
    pools and wraps around once (next fit): started at the number of ports the network has,
    it begins where the next free address is when addresses went out in order, so a create's
    cost grows with the addresses it takes, not with those in use (reading every used address
    was most of a create of 100 on a network with thousands of ports, profiled). Started at
    0, it hands out the lowest free address. Values are kept as integers: an IPv4Address
    hashes through ``hex()``."""

    def __init__(
        self,
        *,
        name: str,
        cidr: IPv4Network,
        gateway: IPv4Address | None,
        pools: Sequence[Pool],
        probe: Probe,
        start: int = 0,
    ) -> None:
        self._name = name
        self._cidr = cidr
        self._gateway = gateway
        self._pools = tuple(pools)
        self._probe = probe
        self._taken: set[int] = set()
        self._free: deque[int] = deque()  # probed free, in scan order, not yet handed out
        self._cursor = self._scan(start)
        self._window = PROBE_FIRST

    def take(self, requested: IPv4Address | None = None, *, field: str = "networks") -> IPv4Address:
        """The requested address if free, else the next free one of the pools."""
        if requested is not None:
            check_fixed_ip(field, requested, cidr=self._cidr, gateway=self._gateway)
            if int(requested) in self._taken or self._probe([requested]):
                raise AlreadyExists(
                    f"{field}: address {requested} is in use on network {self._name!r}",
                    field=field,
                )
            self._taken.add(int(requested))
            return requested
        while True:
            while self._free:
                value = self._free.popleft()
                if value not in self._taken:  # a requested address may have taken it since
                    self._taken.add(value)
                    return IPv4Address(value)
            if not self._probe_next():
                raise NetworkFull(self._name, size=pool_size(self._pools), field=field)

    def _probe_next(self) -> bool:
        """Ask about the next window of the scan; False when the scan is over."""
        while True:
            window = list(islice(self._cursor, self._window))
            if not window:
                return False
            self._window = min(self._window * 2, PROBE_MOST)
            candidates = [v for v in window if v not in self._taken]
            if candidates:
                used = {int(a) for a in self._probe([IPv4Address(v) for v in candidates])}
                self._free.extend(v for v in candidates if v not in used)
                return True

    def _scan(self, start: int) -> Iterator[int]:
        """Every pool address once: from ``start`` addresses in to the end, then from the
        first up to there."""
        ranges = [range(int(first), int(last) + 1) for first, last in self._pools]
        size = sum(len(r) for r in ranges)
        if size == 0:
            return
        offset = start % size
        head: list[range] = []
        for r in ranges:
            if offset >= len(r):
                offset -= len(r)
                head.append(r)
                continue
            yield from r[offset:]
            head.append(r[:offset])
            offset = 0
        for r in head:
            yield from r


def new_mac() -> str:
    tail = secrets.token_bytes(3)
    return MAC_PREFIX + "".join(f":{b:02x}" for b in tail)


def _host_range(cidr: IPv4Network) -> tuple[IPv4Address, IPv4Address] | None:
    if cidr.prefixlen >= 31:  # point-to-point; no room for a gateway and hosts
        return None
    return cidr.network_address + 1, cidr.broadcast_address - 1
