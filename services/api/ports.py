"""The NICs of new servers: which networks they ask for, and their ports with addresses,
allocated inside the create's own transaction (IPAM in the database, atomic)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address

from services.api import validation
from services.api.context import RequestContext
from services.api.networks import default_network, parse_address, resolve_network
from services.common import ipam
from services.common.errors import InvalidArgument
from services.common.networking import Network
from services.common.records import NewPort
from services.common.stores import NetworkStore

AUTO, NONE = "auto", "none"


@dataclass(frozen=True, slots=True)
class NicRequest:
    """One NIC: ``network`` is "auto" (the project's default network) or a name or id."""

    network: str
    fixed_ip: IPv4Address | None = None


def check_nics(
    networks: Sequence[str], nics: Sequence[tuple[str, str]], *, max_count: int
) -> tuple[NicRequest, ...]:
    """The NICs a create asks for, from either the list of names or the structured
    requests; empty means no NIC."""
    if networks and nics:
        raise InvalidArgument("nics", "give either networks or nics, not both")
    if not nics:
        return tuple(NicRequest(n) for n in validation.check_networks(list(networks)))
    if len(nics) > validation.NETWORKS_MAX:
        raise InvalidArgument("nics", f"at most {validation.NETWORKS_MAX} NICs")
    requests: list[NicRequest] = []
    for network, fixed_ip in nics:
        if network in {AUTO, NONE}:
            raise InvalidArgument("nics.network", f"{network!r} is for networks, not nics")
        validation.check_name("nics.network", network)
        address = parse_address("nics.fixed_ip", fixed_ip) if fixed_ip else None
        if address is not None and max_count > 1:
            raise InvalidArgument("nics.fixed_ip", "a fixed IP needs a single server (max_count 1)")
        requests.append(NicRequest(network, address))
    return tuple(requests)


@dataclass(frozen=True, slots=True)
class PortSlot:
    """An address taken for one NIC of a new server; its port (with a MAC) is made when the
    batch is stored."""

    instance_uuid: str
    network_id: str
    device_index: int
    fixed_ip: IPv4Address


class PortAllocator:
    """Ports for one batch of creates, in its transaction. Each network is locked (on
    PostgreSQL) once per batch, and only the addresses about to be handed out are looked up
    (a few queries per batch, whatever the network holds); the unique (network, address) key
    backs it all up."""

    def __init__(self, store: NetworkStore) -> None:
        self._store = store
        self._networks: dict[tuple[str, str], Network] = {}
        self._pools: dict[str, ipam.AddressPool] = {}
        self._kept: list[PortSlot] = []

    def resolve(self, nics: Sequence[NicRequest], context: RequestContext) -> list[Network]:
        """The network of each NIC (NOT_FOUND names the field)."""
        field = "nics.network" if any(n.fixed_ip for n in nics) else "networks"
        return [self._network(nic.network, context, field) for nic in nics]

    def allocate(
        self,
        instance_uuids: Sequence[str],
        nics: Sequence[NicRequest],
        networks: Sequence[Network],
    ) -> list[PortSlot]:
        """An address on each NIC's network for every instance. Nothing is stored until
        ``keep``: a create that fails (or loses its idempotency key) after this keeps none
        (its addresses are only skipped for the rest of this batch)."""
        slots: list[PortSlot] = []
        for uuid in instance_uuids:
            for index, (nic, network) in enumerate(zip(nics, networks, strict=True)):
                field = "nics.fixed_ip" if nic.fixed_ip else "networks"
                address = self._pool(network).take(nic.fixed_ip, field=field)
                slots.append(PortSlot(uuid, network.id, index, address))
        return slots

    def keep(self, slots: Sequence[PortSlot]) -> None:
        self._kept.extend(slots)

    def insert(self, now: datetime) -> None:
        """The kept ports, each with a MAC of its own: drawn here, for the whole batch at
        once, so that a batch checks its MACs in one query however many ports it makes."""
        macs = self._new_macs(len(self._kept))
        self._store.insert_ports(
            [
                NewPort(s.instance_uuid, s.network_id, s.device_index, mac, s.fixed_ip)
                for s, mac in zip(self._kept, macs, strict=True)
            ],
            now,
        )

    def _new_macs(self, count: int) -> list[str]:
        """``count`` MACs no port has. 24 random bits collide by the birthday bound once a
        deployment has thousands of ports (seen in make bench: the whole batch failed on the
        unique key), so the candidates are checked against each other and the database: all
        of them in one query (one per MAC made a create of 100 servers 100 round trips),
        drawing again only for those taken."""
        made: list[str] = []
        while len(made) < count:
            candidates = {ipam.new_mac() for _ in range(count - len(made))} - set(made)
            if candidates:
                made.extend(candidates - self._store.macs_in_use(sorted(candidates)))
        return made

    def _network(self, ref: str, context: RequestContext, field: str) -> Network:
        key = (context.project_id if ref == AUTO else str(context.scope), ref)
        if key not in self._networks:
            if ref == AUTO:
                network = default_network(self._store, context.project_id)
            else:
                network = resolve_network(self._store, ref, context, field=field)
            self._networks[key] = network
        return self._networks[key]

    def _pool(self, network: Network) -> ipam.AddressPool:
        if network.id not in self._pools:
            self._store.lock([network.id])
            network_id = network.id

            def probe(candidates: Sequence[IPv4Address]) -> set[IPv4Address]:
                return self._store.addresses_in_use(network_id, candidates)

            # next fit from the network's count of ports (see AddressPool)
            self._pools[network.id] = ipam.AddressPool(
                name=network.name,
                cidr=network.cidr,
                gateway=network.gateway,
                pools=network.allocation_pools,
                probe=probe,
                start=self._store.ports_on(network.id),
            )
        return self._pools[network.id]
