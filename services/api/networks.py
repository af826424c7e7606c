"""Networks of a project: create (with its subnet), get, list, delete; and the default
network that ``networks=["auto"]`` gets (Neutron's "get me a network")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext, require_admin
from services.common import ipam
from services.common.domain import utcnow
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    WrongState,
)
from services.common.networking import Network
from services.common.records import NewNetwork
from services.common.stores import NetworkStore, UnitOfWork

MIN_PREFIX, MAX_PREFIX = 8, 29
DNS_SERVERS_MAX = 5
POOLS_MAX = 16
# "auto" networks: the first 10.N.0.0/16 that overlaps none of the project's networks.
AUTO_SUPERNET = IPv4Network("10.0.0.0/8")
AUTO_PREFIX = 16
AUTO_NAME = "auto_allocated_network"


@dataclass(frozen=True, slots=True)
class NetworkUsage:
    network: Network
    ports_in_use: int
    pool_size: int


@dataclass(frozen=True, slots=True)
class CreateNetworkCommand:
    name: str
    cidr: str
    gateway_ip: str = ""
    dns_nameservers: Sequence[str] = ()
    allocation_pools: Sequence[tuple[str, str]] = ()
    shared: bool = False


def parse_address(field: str, text: str) -> IPv4Address:
    try:
        return IPv4Address(text.strip())
    except (AddressValueError, ValueError) as exc:
        raise InvalidArgument(field, f"{text[:64]!r} is not an IPv4 address") from exc


def check_cidr(field: str, text: str) -> IPv4Network:
    if ":" in text:
        raise InvalidArgument(field, "only IPv4 subnets are supported")
    try:
        cidr = IPv4Network(text.strip(), strict=True)
    except (AddressValueError, NetmaskValueError, ValueError) as exc:
        raise InvalidArgument(
            field, f"{text[:64]!r} is not an IPv4 network in CIDR notation (host bits unset)"
        ) from exc
    if "/" not in text or not MIN_PREFIX <= cidr.prefixlen <= MAX_PREFIX:
        raise InvalidArgument(field, f"the prefix length must be /{MIN_PREFIX} to /{MAX_PREFIX}")
    return cidr


def check_gateway(field: str, text: str, cidr: IPv4Network) -> IPv4Address | None:
    """The subnet's gateway: "none" for none, empty for the first host address (as
    Neutron), else that host address of the subnet."""
    if text.strip().lower() == "none":
        return None
    if not text:
        return cidr.network_address + 1
    gateway = parse_address(field, text)
    ipam.check_fixed_ip(field, gateway, cidr=cidr, gateway=None)
    return gateway


def new_network_from(command: CreateNetworkCommand, context: RequestContext) -> NewNetwork:
    """Everything about a new network that needs no database, each rejection naming its
    field."""
    name = validation.check_name("name", command.name)
    if name in {"auto", "none"}:
        raise InvalidArgument("name", f"{name!r} is reserved (CreateServer networks)")
    if command.shared:
        require_admin(context, "shared: sharing a network")
    cidr = check_cidr("cidr", command.cidr)
    gateway = check_gateway("gateway_ip", command.gateway_ip, cidr)
    if len(command.dns_nameservers) > DNS_SERVERS_MAX:
        raise InvalidArgument("dns_nameservers", f"at most {DNS_SERVERS_MAX}")
    dns = tuple(parse_address("dns_nameservers", a) for a in command.dns_nameservers)
    pools = check_pools(command.allocation_pools, cidr, gateway)
    return NewNetwork(
        project_id=context.project_id, name=name, cidr=cidr, gateway=gateway,
        dns_servers=dns, allocation_pools=pools, shared=command.shared,
    )  # fmt: skip


def check_pools(
    given: Sequence[tuple[str, str]], cidr: IPv4Network, gateway: IPv4Address | None
) -> tuple[ipam.Pool, ...]:
    if not given:
        return ipam.default_pools(cidr, gateway)
    if len(given) > POOLS_MAX:
        raise InvalidArgument("allocation_pools", f"at most {POOLS_MAX}")
    pools: list[ipam.Pool] = []
    for start_text, end_text in given:
        start = parse_address("allocation_pools.start", start_text)
        end = parse_address("allocation_pools.end", end_text)
        for address in (start, end):
            ipam.check_fixed_ip("allocation_pools", address, cidr=cidr, gateway=None)
        if end < start:
            raise InvalidArgument("allocation_pools", f"{start}-{end}: the end is before the start")
        if gateway is not None and start <= gateway <= end:
            raise InvalidArgument("allocation_pools", f"{start}-{end} holds the gateway {gateway}")
        for first, last in pools:
            if start <= last and first <= end:
                raise InvalidArgument("allocation_pools", f"{start}-{end} overlaps {first}-{last}")
        pools.append((start, end))
    return tuple(sorted(pools))


def check_no_overlap(store: NetworkStore, new: NewNetwork) -> None:
    for name, cidr in store.project_cidrs(new.project_id):
        if cidr.overlaps(new.cidr):
            raise InvalidArgument(
                "cidr", f"{new.cidr} overlaps {cidr} of the project's network {name!r}"
            )


def default_network(store: NetworkStore, project_id: str) -> Network:
    """The project's default network, made on first use. Two creates racing to make it
    both end up with the same one (the insert ignores the loser's conflict)."""
    found = store.default_network(project_id)
    if found is not None:
        return found
    taken = [cidr for _, cidr in store.project_cidrs(project_id)]
    for cidr in AUTO_SUPERNET.subnets(new_prefix=AUTO_PREFIX):
        if not any(cidr.overlaps(other) for other in taken):
            break
    else:
        raise WrongState("networks: no free 10.x.0.0/16 for the project's default network")
    gateway = cidr.network_address + 1
    new = NewNetwork(
        project_id=project_id, name=AUTO_NAME, cidr=cidr, gateway=gateway, dns_servers=(),
        allocation_pools=ipam.default_pools(cidr, gateway), is_default=True,
    )  # fmt: skip
    made = store.create(new, utcnow())
    if made is not None:
        return made
    raced = store.default_network(project_id)
    if raced is None:
        raise AlreadyExists(f"networks: the project has a network named {AUTO_NAME!r}")
    return raced


def resolve_network(
    store: NetworkStore, ref: str, context: RequestContext, *, field: str
) -> Network:
    """A network the caller may use, by id or unique name; NOT_FOUND for another project's
    unshared network (its existence is not revealed)."""
    found = store.find(ref, project_id=context.scope)
    if not found:
        raise NotFound("network", ref, field=field)
    if len(found) > 1:
        ids = ", ".join(n.id for n in found)
        raise InvalidArgument(field, f"network name {ref!r} is ambiguous (ids: {ids}); use an id")
    return found[0]


class NetworksTx(Protocol):
    @property
    def networks(self) -> NetworkStore: ...


class NetworkUseCases:
    def __init__(self, uow: UnitOfWork[NetworksTx]) -> None:
        self._uow = uow

    async def create(self, context: RequestContext, command: CreateNetworkCommand) -> NetworkUsage:
        new = new_network_from(command, context)

        def work(tx: NetworksTx) -> NetworkUsage:
            check_no_overlap(tx.networks, new)
            made = tx.networks.create(new, utcnow())
            if made is None:
                raise AlreadyExists(f"name: a network {new.name!r} exists already", field="name")
            return NetworkUsage(made, 0, ipam.pool_size(made.allocation_pools))

        return await self._uow.write(work)

    async def get(self, context: RequestContext, ref: str) -> NetworkUsage:
        ref = validation.check_ref("id", ref)

        def work(tx: NetworksTx) -> NetworkUsage:
            network = resolve_network(tx.networks, ref, context, field="id")
            return _usage(tx.networks, network)

        return await self._uow.read(work)

    async def list_networks(self, context: RequestContext) -> list[NetworkUsage]:
        def work(tx: NetworksTx) -> list[NetworkUsage]:
            found = tx.networks.list_networks(project_id=context.scope)
            return [_usage(tx.networks, n) for n in found]

        return await self._uow.read(work)

    async def delete(self, context: RequestContext, ref: str) -> None:
        ref = validation.check_ref("id", ref)

        def work(tx: NetworksTx) -> None:
            network = resolve_network(tx.networks, ref, context, field="id")
            if network.project_id != context.project_id and not context.is_admin:
                raise PermissionDenied(f"id: network {network.name!r} belongs to another project")
            tx.networks.lock([network.id])
            in_use = tx.networks.ports_on(network.id)
            if in_use:
                raise WrongState(
                    f"id: network {network.name!r} has {in_use} port(s) in use; "
                    "delete its servers first",
                    field="id",
                )
            tx.networks.delete(network.id)

        await self._uow.write(work)


def _usage(store: NetworkStore, network: Network) -> NetworkUsage:
    return NetworkUsage(
        network,
        store.ports_on(network.id),
        ipam.pool_size(network.allocation_pools),
    )
