"""The public Consoles service: protobuf stops here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from services.api.consoles import ConsoleOutputs, ConsoleSessions, check_input
from services.api.servicer import Identify
from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.v1 import consoles_pb2, consoles_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class ConsolesServicer(consoles_pb2_grpc.ConsolesServicer):  # type: ignore[misc]
    def __init__(
        self, outputs: ConsoleOutputs, sessions: ConsoleSessions, identify: Identify
    ) -> None:
        self._outputs = outputs
        self._sessions = sessions
        self._identify = identify

    async def GetConsoleOutput(
        self, request: consoles_pb2.GetConsoleOutputRequest, context: Context
    ) -> consoles_pb2.ConsoleOutput:
        caller = await self._identify(context)
        text = await self._outputs.get(request.server_id, request.lines, caller)
        return consoles_pb2.ConsoleOutput(output=text.output, truncated=text.truncated)

    async def FollowConsoleOutput(
        self, request: consoles_pb2.FollowConsoleOutputRequest, context: Context
    ) -> AsyncIterator[consoles_pb2.ConsoleOutput]:
        caller = await self._identify(context)
        async for text in self._outputs.follow(request.server_id, request.lines, caller):
            yield consoles_pb2.ConsoleOutput(output=text.output, truncated=text.truncated)

    async def AttachConsole(
        self, request_iterator: AsyncIterator[consoles_pb2.AttachConsoleRequest], context: Context
    ) -> AsyncIterator[consoles_pb2.ConsoleChunk]:
        caller = await self._identify(context)
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or not first.server_id:
            raise InvalidArgument("server_id", "the first message must name the server")

        async def inputs() -> AsyncIterator[bytes]:
            yield check_input(first.data)
            async for message in requests:
                yield check_input(message.data)

        async for chunk in self._sessions.attach(first.server_id, caller, inputs()):
            yield consoles_pb2.ConsoleChunk(data=chunk)
