"""Floating addresses of a project: allocate from an external network's pool, associate with
a port of one of its servers (on a network connected to that external network), disassociate,
release. Every refusal names its field and changes nothing."""

from __future__ import annotations

from sqlalchemy import Connection, select

from services.api import validation
from services.api.context import RequestContext
from services.api.external_networks import HostNetworksChanged, resolve_external
from services.api.networks import parse_address
from services.common.db import external as external_repo
from services.common.db.engine import Database
from services.common.db.models import INSTANCES
from services.common.domain import VmState, utcnow
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    WrongState,
)
from services.common.external import FloatingIP


def _find(connection: Connection, context: RequestContext, ref: str) -> FloatingIP:
    """Another project's address is NOT_FOUND here (reads never reveal it)."""
    found = external_repo.find_floating(connection, ref)
    if found is None or (context.scope is not None and found.project_id != context.scope):
        raise NotFound("floating IP", ref, field="id")
    return found


def _reload(connection: Connection, floating_id: str) -> FloatingIP:
    found = external_repo.find_floating(connection, floating_id)
    assert found is not None
    return found


class FloatingIPUseCases:
    def __init__(self, db: Database, changes: HostNetworksChanged) -> None:
        self._db = db
        self._changes = changes

    async def allocate(
        self, context: RequestContext, external_ref: str, address: str = ""
    ) -> FloatingIP:
        external_ref = validation.check_ref("external_network_id", external_ref)
        requested = parse_address("floating_ip_address", address) if address else None

        def work(connection: Connection) -> FloatingIP:
            external = resolve_external(connection, external_ref, field="external_network_id")
            if requested is not None and not any(
                first <= requested <= last for first, last in external.allocation_pools
            ):
                raise InvalidArgument("floating_ip_address", f"{requested} is not in the pools "
                                      f"of external network {external.name!r}")  # fmt: skip
            external_repo.lock_external(connection, external.id)
            taken = external_repo.take_address(
                connection, external, requested=requested,
                field="floating_ip_address" if requested else "external_network_id",
            )  # fmt: skip
            floating_id = external_repo.insert_floating(
                connection, external.id, taken, project_id=context.project_id, now=utcnow()
            )
            return _reload(connection, floating_id)

        return await self._db.write(work)

    async def get(self, context: RequestContext, ref: str) -> FloatingIP:
        ref = validation.check_ref("id", ref)
        return await self._db.read(lambda c: _find(c, context, ref))

    async def list_floating(self, context: RequestContext) -> list[FloatingIP]:
        return await self._db.read(
            lambda c: external_repo.list_floating(c, project_id=context.scope)
        )

    async def release(self, context: RequestContext, ref: str) -> None:
        ref = validation.check_ref("id", ref)

        def work(connection: Connection) -> None:
            floating = _find(connection, context, ref)
            if floating.port_id is not None:
                raise WrongState(f"id: floating IP {floating.address} is associated with server "
                                 f"{floating.server_id}; disassociate it first",
                                 field="id")  # fmt: skip
            external_repo.release_floating(connection, floating.id)

        await self._db.write(work)

    async def associate(
        self, context: RequestContext, ref: str, server_id: str, *, port_id: str = ""
    ) -> FloatingIP:
        ref = validation.check_ref("id", ref)
        server_id = validation.check_ref("server_id", server_id)

        def work(connection: Connection) -> FloatingIP:
            floating = external_repo.find_floating(connection, ref)
            if floating is None:
                raise NotFound("floating IP", ref, field="id")
            if floating.project_id != context.project_id and not context.is_admin:
                raise PermissionDenied(
                    f"id: floating IP {floating.address} belongs to another project", field="id"
                )
            owner = connection.execute(
                select(INSTANCES.c.project_id).where(
                    INSTANCES.c.uuid == server_id, INSTANCES.c.vm_state != VmState.DELETED.value
                )
            ).scalar()
            if owner is None or owner != floating.project_id:
                raise NotFound("server", server_id, field="server_id")
            ports = external_repo.live_ports_of(connection, server_id)
            if port_id:
                ports = [p for p in ports if p["id"] == port_id]
                if not ports:
                    raise InvalidArgument("port_id", f"{port_id!r} is not a port of server "
                                          f"{server_id}")  # fmt: skip
            usable = [p for p in ports
                      if p["external_network_id"] == floating.external_network_id]  # fmt: skip
            if not usable:
                raise WrongState(f"server_id: server {server_id} has no port on a network "
                                 f"connected to external network "
                                 f"{floating.external_network_name!r}",
                                 field="port_id" if port_id else "server_id")  # fmt: skip
            port = usable[0]
            if floating.port_id == port["id"]:
                return floating  # already so: a retried call changes nothing
            if floating.port_id is not None:
                raise WrongState(f"id: floating IP {floating.address} is in use by server "
                                 f"{floating.server_id}; disassociate it first",
                                 field="id")  # fmt: skip
            other = external_repo.floating_on_port(connection, port["id"])
            if other is not None:
                raise AlreadyExists(f"port_id: port {port['id']} has floating IP {other} "
                                    "already", field="port_id")  # fmt: skip
            if not external_repo.set_association(connection, floating.id, port["id"]):
                raise WrongState(f"id: floating IP {floating.address} was just associated "
                                 "elsewhere", field="id")  # fmt: skip
            return _reload(connection, floating.id)

        found = await self._db.write(work)
        self._changes.host_networks_changed()
        return found

    async def disassociate(self, context: RequestContext, ref: str) -> FloatingIP:
        ref = validation.check_ref("id", ref)

        def work(connection: Connection) -> FloatingIP:
            floating = _find(connection, context, ref)
            if floating.port_id is None:
                return floating
            external_repo.set_association(connection, floating.id, None)
            return _reload(connection, floating.id)

        found = await self._db.write(work)
        self._changes.host_networks_changed()
        return found
