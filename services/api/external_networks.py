"""External networks (admin-defined, outside the cloud) and connecting a project network to
one. Every refusal names its field; a refused request changes nothing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection

from services.api import validation
from services.api.context import RequestContext, require_admin
from services.api.networks import (
    NetworkUsage,
    _usage,
    check_cidr,
    check_gateway,
    check_pools,
    resolve_network,
)
from services.common import ipam
from services.common.db import external as external_repo
from services.common.db import networks as network_repo
from services.common.db.engine import Database
from services.common.db.stores import SqlNetworks
from services.common.domain import utcnow
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    WrongState,
)
from services.common.external import ExternalNetwork
from services.common.networking import Network

# A Linux interface name: at most 15 bytes, no '/', whitespace or ':'.
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class HostNetworksChanged(Protocol):
    """Told after a commit that changed what some host's datapath needs (never blocks)."""

    def host_networks_changed(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ExternalUsage:
    network: ExternalNetwork
    addresses_in_use: int
    pool_size: int


@dataclass(frozen=True, slots=True)
class CreateExternalNetworkCommand:
    name: str
    cidr: str
    bridge: str
    gateway_ip: str = ""
    allocation_pools: Sequence[tuple[str, str]] = ()


def new_external_from(command: CreateExternalNetworkCommand) -> external_repo.NewExternalNetwork:
    name = validation.check_name("name", command.name)
    cidr = check_cidr("cidr", command.cidr)
    gateway = check_gateway("gateway_ip", command.gateway_ip, cidr)
    if not command.allocation_pools:
        # floating and host gateway addresses come from the pool; the rest of the subnet
        # belongs to whatever else lives on the external network
        raise InvalidArgument("allocation_pools", "an external network needs at least one pool")
    pools = check_pools(command.allocation_pools, cidr, gateway)
    if not _IFNAME.match(command.bridge or ""):
        raise InvalidArgument(
            "bridge", "must be an interface name: 1 to 15 letters, digits, '-', '_' or '.'"
        )
    return external_repo.NewExternalNetwork(name, cidr, gateway, pools, command.bridge)


def resolve_external(connection: Connection, ref: str, *, field: str) -> ExternalNetwork:
    found = external_repo.find_external_networks(connection, ref)
    if not found:
        raise NotFound("external network", ref, field=field)
    return found[0]


def _external_usage(connection: Connection, external: ExternalNetwork) -> ExternalUsage:
    return ExternalUsage(
        external,
        external_repo.addresses_in_use(connection, external.id),
        ipam.pool_size(external.allocation_pools),
    )


class ExternalNetworkUseCases:
    def __init__(self, db: Database, changes: HostNetworksChanged) -> None:
        self._db = db
        self._changes = changes

    async def create(
        self, context: RequestContext, command: CreateExternalNetworkCommand
    ) -> ExternalUsage:
        require_admin(context, "creating an external network")
        new = new_external_from(command)

        def work(connection: Connection) -> ExternalUsage:
            made = external_repo.create_external_network(connection, new, utcnow())
            if made is None:
                raise AlreadyExists(
                    f"name: an external network {new.name!r} exists already", field="name"
                )
            return _external_usage(connection, made)

        return await self._db.write(work)

    async def get(self, context: RequestContext, ref: str) -> ExternalUsage:
        ref = validation.check_ref("id", ref)
        return await self._db.read(
            lambda c: _external_usage(c, resolve_external(c, ref, field="id"))
        )

    async def list_external(self, context: RequestContext) -> list[ExternalUsage]:
        def work(connection: Connection) -> list[ExternalUsage]:
            return [_external_usage(connection, e)
                    for e in external_repo.list_external_networks(connection)]  # fmt: skip

        return await self._db.read(work)

    async def delete(self, context: RequestContext, ref: str) -> None:
        require_admin(context, "deleting an external network")
        ref = validation.check_ref("id", ref)

        def work(connection: Connection) -> None:
            external = resolve_external(connection, ref, field="id")
            external_repo.lock_external(connection, external.id)
            connected = external_repo.connected_networks(connection, external.id)
            if connected:
                names = ", ".join(sorted(connected))
                raise WrongState(
                    f"id: networks {names} are connected to {external.name!r}; disconnect them "
                    "first",
                    field="id",
                )
            in_use = external_repo.addresses_in_use(connection, external.id)
            if in_use:
                raise WrongState(f"id: {in_use} address(es) of {external.name!r} are "
                                 "allocated; release them first", field="id")  # fmt: skip
            external_repo.delete_external_network(connection, external.id)

        await self._db.write(work)

    async def connect(
        self, context: RequestContext, network_ref: str, external_ref: str
    ) -> NetworkUsage:
        network_ref = validation.check_ref("network_id", network_ref)
        external_ref = validation.check_ref("external_network_id", external_ref)

        def work(connection: Connection) -> NetworkUsage:
            network = resolve_network(
                SqlNetworks(connection), network_ref, context, field="network_id"
            )
            _check_owner(context, network.project_id, network.name)
            external = resolve_external(connection, external_ref, field="external_network_id")
            if network.cidr.overlaps(external.cidr):
                raise InvalidArgument("network_id", f"network {network.name!r} ({network.cidr}) "
                                      f"overlaps external network {external.name!r} "
                                      f"({external.cidr})")  # fmt: skip
            if network.gateway is None:
                raise InvalidArgument("network_id", f"network {network.name!r} has no gateway "
                                      "to route through")  # fmt: skip
            current = external_repo.network_connection(connection, network.id)
            if current == external.id:
                return _usage(SqlNetworks(connection), network)
            if current is not None:
                raise WrongState(f"network_id: network {network.name!r} is connected to another "
                                 "external network; disconnect it first",
                                 field="network_id")  # fmt: skip
            external_repo.set_connection(connection, network.id, external.id)
            return _usage(SqlNetworks(connection), _reread(connection, network.id))

        found = await self._db.write(work)
        self._changes.host_networks_changed()
        return found

    async def disconnect(self, context: RequestContext, network_ref: str) -> NetworkUsage:
        network_ref = validation.check_ref("network_id", network_ref)

        def work(connection: Connection) -> NetworkUsage:
            network = resolve_network(
                SqlNetworks(connection), network_ref, context, field="network_id"
            )
            _check_owner(context, network.project_id, network.name)
            bound = external_repo.floating_on_network(connection, network.id)
            if bound:
                raise WrongState(f"network_id: floating addresses {', '.join(sorted(bound))} "
                                 f"are associated with ports on {network.name!r}; disassociate "
                                 "them first", field="network_id")  # fmt: skip
            external_repo.set_connection(connection, network.id, None)
            return _usage(SqlNetworks(connection), _reread(connection, network.id))

        found = await self._db.write(work)
        self._changes.host_networks_changed()
        return found


def _check_owner(context: RequestContext, project_id: str, name: str) -> None:
    if project_id != context.project_id and not context.is_admin:
        raise PermissionDenied(
            f"network_id: network {name!r} belongs to another project", field="network_id"
        )


def _reread(connection: Connection, network_id: str) -> Network:
    found = network_repo.get_network(connection, network_id)
    assert found is not None  # updated in this transaction
    return found
