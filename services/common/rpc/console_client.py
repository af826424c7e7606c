"""Typed client of the compute hosts' ComputeConsole service (the api's side). gRPC errors
become domain errors here, once, so the use case never sees a status code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from services.common.context import request_metadata
from services.common.errors import DomainError, Unavailable, WrongState
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2 as pb,
)
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2_grpc as pb_grpc,
)
from services.common.rpc.channels import ChannelPool


@dataclass(frozen=True, slots=True)
class ConsoleText:
    output: bytes
    truncated: bool


def domain_error(exc: grpc.aio.AioRpcError) -> DomainError:
    """What a compute host's refusal means to the api's caller."""
    code, details = exc.code(), exc.details() or exc.code().name
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return WrongState(details)
    if code == grpc.StatusCode.NOT_FOUND:
        # The database places the server on that host, the host has no such domain: it is
        # being built, deleted or moved right now.
        return WrongState("id: the server is not (or no longer) on its compute host")
    return Unavailable(f"the server's compute host did not answer: {code.name}: {details}")


class ComputeConsoleClient:
    def __init__(self, channels: ChannelPool, *, timeout: float) -> None:
        self._channels = channels
        self._timeout = timeout

    def _stub(self, address: str) -> pb_grpc.ComputeConsoleStub:
        return pb_grpc.ComputeConsoleStub(self._channels.get(address))

    async def output(
        self, address: str, uuid: str, *, lines: int, max_bytes: int = 0, request_id: str = ""
    ) -> ConsoleText:
        request = pb.ConsoleOutputRequest(instance_uuid=uuid, lines=lines, max_bytes=max_bytes)
        try:
            reply = await self._stub(address).GetConsoleOutput(
                request, timeout=self._timeout, metadata=request_metadata(request_id)
            )
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc) from exc
        return ConsoleText(reply.output, reply.truncated)

    async def follow(
        self, address: str, uuid: str, *, lines: int, request_id: str = ""
    ) -> AsyncIterator[ConsoleText]:
        """No deadline of its own: it lasts as long as the caller's call (cancelled with it)."""
        request = pb.ConsoleOutputRequest(instance_uuid=uuid, lines=lines)
        call = self._stub(address).FollowConsoleOutput(
            request, metadata=request_metadata(request_id)
        )
        try:
            async for reply in call:
                yield ConsoleText(reply.output, reply.truncated)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc) from exc
        finally:
            call.cancel()
