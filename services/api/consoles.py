"""Console output and sessions: check who asks and where the server runs, then hand over to
that server's compute host (the only place its console exists)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext
from services.common.consoles import ConsoleText
from services.common.domain import VmState
from services.common.errors import (
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    Unavailable,
    WrongState,
)
from services.common.stores import InstanceStore, NodeStore, UnitOfWork

MAX_LINES = 10_000
MAX_INPUT_BYTES = 4096


class ComputeConsoles(Protocol):
    async def output(
        self, address: str, uuid: str, *, lines: int, max_bytes: int = 0, request_id: str = ""
    ) -> ConsoleText: ...

    def follow(
        self, address: str, uuid: str, *, lines: int, request_id: str = ""
    ) -> AsyncIterator[ConsoleText]: ...

    def attach(
        self, address: str, uuid: str, inputs: AsyncIterator[bytes], *, request_id: str = ""
    ) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True, slots=True)
class Located:
    uuid: str
    vm_state: VmState
    address: str


def check_lines(lines: int) -> int:
    if not 0 <= lines <= MAX_LINES:
        raise InvalidArgument("lines", f"must be between 0 (all that fit) and {MAX_LINES}")
    return lines


class LocateTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...
    @property
    def nodes(self) -> NodeStore: ...


class ConsoleLocator:
    """The compute address of a server the caller may see, or the right refusal."""

    def __init__(self, uow: UnitOfWork[LocateTx]) -> None:
        self._uow = uow

    async def __call__(self, server_id: str, context: RequestContext) -> Located:
        server_id = validation.check_uuid_ref("server_id", server_id)

        def find(tx: LocateTx) -> Located:
            found = tx.instances.get(server_id, project_id=context.scope)
            if found is None or found.vm_state is VmState.DELETED:
                raise NotFound("server", server_id, field="server_id")
            if found.host is None:
                raise WrongState(
                    f"server_id: server {server_id} has no compute host yet "
                    f"(it is {found.status.value}): it has no console"
                )
            address = tx.nodes.rpc_addresses([found.host]).get(found.host)
            if not address:
                raise Unavailable(f"compute host {found.host} of server {server_id} is unknown")
            return Located(found.uuid, found.vm_state, address)

        return await self._uow.read(find)


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


def check_input(data: bytes) -> bytes:
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidArgument("data", f"at most {MAX_INPUT_BYTES} bytes a message")
    return data


class OpenConsoles:
    """Console sessions open through this api process, per project (the caller's). A
    session holds a stream through two services and a libvirt stream: a bound keeps one
    project from holding them all."""

    def __init__(self, limit_per_project: int) -> None:
        self._limit = limit_per_project
        self._open: dict[str, int] = {}

    def count(self, project_id: str) -> int:
        return self._open.get(project_id, 0)

    @contextmanager
    def reserve(self, project_id: str) -> Iterator[None]:
        in_use = self.count(project_id)
        if in_use >= self._limit:
            raise QuotaExceeded("console_sessions", limit=self._limit, in_use=in_use, requested=1)
        self._open[project_id] = in_use + 1
        try:
            yield
        finally:
            left = self._open[project_id] - 1
            if left:
                self._open[project_id] = left
            else:
                del self._open[project_id]


class ConsoleSessions:
    def __init__(
        self, locate: ConsoleLocator, computes: ComputeConsoles, open_consoles: OpenConsoles
    ) -> None:
        self._locate = locate
        self._computes = computes
        self._open = open_consoles

    async def attach(
        self, server_id: str, context: RequestContext, inputs: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """The guest's output while ``inputs`` are typed into it; ends when the guest's side
        does (stopped, deleted, taken over) or when the caller goes away."""
        with self._open.reserve(context.project_id):
            where = await self._locate(server_id, context)
            if where.vm_state is not VmState.ACTIVE:
                raise WrongState(
                    f"server_id: server {server_id} is {where.vm_state.value}: only a running "
                    "server's console can be attached"
                )
            async for chunk in self._computes.attach(
                where.address, where.uuid, inputs, request_id=context.request_id
            ):
                yield chunk
