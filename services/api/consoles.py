"""Console output and sessions: check who asks and where the server runs, then hand over to
that server's compute host (the only place its console exists)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection, select

from services.api import validation
from services.api.context import RequestContext
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.db.models import NODES
from services.common.domain import VmState
from services.common.errors import InvalidArgument, NotFound, Unavailable, WrongState
from services.common.rpc.console_client import ConsoleText

MAX_LINES = 10_000


class ComputeConsoles(Protocol):
    async def output(
        self, address: str, uuid: str, *, lines: int, max_bytes: int = 0, request_id: str = ""
    ) -> ConsoleText: ...

    def follow(
        self, address: str, uuid: str, *, lines: int, request_id: str = ""
    ) -> AsyncIterator[ConsoleText]: ...


@dataclass(frozen=True, slots=True)
class Located:
    uuid: str
    vm_state: VmState
    address: str


def check_lines(lines: int) -> int:
    if not 0 <= lines <= MAX_LINES:
        raise InvalidArgument("lines", f"must be between 0 (all that fit) and {MAX_LINES}")
    return lines


class ConsoleLocator:
    """The compute address of a server the caller may see, or the right refusal."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, server_id: str, context: RequestContext) -> Located:
        server_id = validation.check_uuid_ref("server_id", server_id)

        def find(connection: Connection) -> Located:
            found = instance_repo.get_instance(connection, server_id, project_id=context.scope)
            if found is None or found.vm_state is VmState.DELETED:
                raise NotFound("server", server_id, field="server_id")
            if found.host is None:
                raise WrongState(
                    f"server_id: server {server_id} has no compute host yet "
                    f"(it is {found.status.value}): it has no console"
                )
            row = connection.execute(
                select(NODES.c.rpc_address).where(NODES.c.host == found.host)
            ).first()
            if row is None or not row[0]:
                raise Unavailable(f"compute host {found.host} of server {server_id} is unknown")
            return Located(found.uuid, found.vm_state, str(row[0]))

        return await self._db.read(find)


class ConsoleOutputs:
    def __init__(self, locate: ConsoleLocator, computes: ComputeConsoles) -> None:
        self._locate = locate
        self._computes = computes

    async def get(self, server_id: str, lines: int, context: RequestContext) -> ConsoleText:
        check_lines(lines)
        where = await self._locate(server_id, context)
        return await self._computes.output(
            where.address, where.uuid, lines=lines, request_id=context.request_id
        )

    async def follow(
        self, server_id: str, lines: int, context: RequestContext
    ) -> AsyncIterator[ConsoleText]:
        check_lines(lines)
        where = await self._locate(server_id, context)
        async for chunk in self._computes.follow(
            where.address, where.uuid, lines=lines, request_id=context.request_id
        ):
            yield chunk
