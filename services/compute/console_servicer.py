"""The internal ComputeConsole service: protobuf stops here."""

from __future__ import annotations

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

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _uuid(value: str) -> str:
    if not value:
        raise InvalidArgument("instance_uuid", "must not be empty")
    return value


class ComputeConsoleServicer(pb_grpc.ComputeConsoleServicer):  # type: ignore[misc]
    def __init__(self, output: ConsoleOutput) -> None:
        self._output = output

    async def GetConsoleOutput(
        self, request: pb.ConsoleOutputRequest, context: Context
    ) -> pb.ConsoleOutputReply:
        tail = await self._output.tail(
            _uuid(request.instance_uuid), lines=request.lines, max_bytes=request.max_bytes
        )
        return pb.ConsoleOutputReply(output=tail.data, truncated=tail.truncated)

    async def FollowConsoleOutput(
        self, request: pb.ConsoleOutputRequest, context: Context
    ) -> AsyncIterator[pb.ConsoleOutputReply]:
        async for tail in self._output.follow(
            _uuid(request.instance_uuid), lines=request.lines, max_bytes=request.max_bytes
        ):
            yield pb.ConsoleOutputReply(output=tail.data, truncated=tail.truncated)
