"""The internal ComputeConsole service: protobuf stops here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2 as pb,
)
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2_grpc as pb_grpc,
)
from services.compute.console.output import ConsoleOutput
from services.compute.console.ports import ConsoleClosed
from services.compute.console.sessions import ConsoleSession, ConsoleSessions

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
log = logging.getLogger(__name__)

# The api forwards at most 4 KiB a message; anything larger did not come through it.
MAX_INPUT_BYTES = 4096


def _uuid(value: str) -> str:
    if not value:
        raise InvalidArgument("instance_uuid", "must not be empty")
    return value


class ComputeConsoleServicer(pb_grpc.ComputeConsoleServicer):  # type: ignore[misc]
    def __init__(self, output: ConsoleOutput, sessions: ConsoleSessions) -> None:
        self._output = output
        self._sessions = sessions

    async def GetConsoleOutput(
        self, request: pb.GetConsoleOutputRequest, context: Context
    ) -> pb.ConsoleOutputReply:
        tail = await self._output.tail(
            _uuid(request.instance_uuid), lines=request.lines, max_bytes=request.max_bytes
        )
        return pb.ConsoleOutputReply(output=tail.data, truncated=tail.truncated)

    async def FollowConsoleOutput(
        self, request: pb.FollowConsoleOutputRequest, context: Context
    ) -> AsyncIterator[pb.ConsoleOutputReply]:
        async for tail in self._output.follow(
            _uuid(request.instance_uuid), lines=request.lines, max_bytes=request.max_bytes
        ):
            yield pb.ConsoleOutputReply(output=tail.data, truncated=tail.truncated)

    async def AttachConsole(
        self, request_iterator: AsyncIterator[pb.AttachConsoleRequest], context: Context
    ) -> AsyncIterator[pb.ConsoleStreamOutput]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidArgument("instance_uuid", "the first message must name the instance")
        session = await self._sessions.attach(_uuid(first.instance_uuid))
        # Headers now tell the api the console is open, so it types only into an open
        # session (see ComputeConsoleClient.attach); a refusal above ends the call instead.
        await context.send_initial_metadata(())
        pump = asyncio.create_task(self._pump(session, first.data, request_iterator))
        try:
            while True:
                while (chunk := await session.read()) is not None:
                    yield pb.ConsoleStreamOutput(data=chunk)
                error = session.outcome()
                if error is not None:
                    raise error
                if not await self._sessions.reopen(session):
                    break
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await self._sessions.detach(session)

    async def _pump(
        self,
        session: ConsoleSession,
        first: bytes,
        inputs: AsyncIterator[pb.AttachConsoleRequest],
    ) -> None:
        """Client -> guest. The client closing its side only stops input: output goes on
        until the client cancels, its deadline passes or the guest's side ends."""
        try:
            await self._type(session, first)
            async for message in inputs:
                if len(message.data) > MAX_INPUT_BYTES:
                    session.finish(
                        "input too large",
                        InvalidArgument("data", f"at most {MAX_INPUT_BYTES} bytes a message"),
                    )
                    return
                await self._type(session, message.data)
        except grpc.aio.AioRpcError as exc:  # the client's side broke: the RPC is ending
            log.debug("console input of %s ended: %s", session.uuid, exc.code().name)

    async def _type(self, session: ConsoleSession, data: bytes) -> None:
        try:
            await self._sessions.write(session, data)
        except ConsoleClosed as exc:
            # The stream ended under this input; the session's reader decides whether it
            # goes on (a reopen) or ends. These bytes are lost either way.
            log.info("console input to %s dropped: %s", session.uuid, exc)

    async def GetConsoleStatus(
        self, request: pb.GetConsoleStatusRequest, context: Context
    ) -> pb.ConsoleStatus:
        sessions = self._sessions.open_sessions
        return pb.ConsoleStatus(
            open_sessions=len(sessions),
            instance_uuids=sorted(s.uuid for s in sessions),
            opened_total=self._sessions.opened_total,
        )
