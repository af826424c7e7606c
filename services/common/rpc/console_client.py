"""Typed client of the compute hosts' ComputeConsole service (the api's side). gRPC errors
become domain errors here, once, so the use case never sees a status code."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from services.common.consoles import ConsoleText as ConsoleText  # noqa: PLC0414
from services.common.context import request_metadata
from services.common.errors import Aborted, DomainError, InvalidArgument, Unavailable, WrongState
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2 as pb,
)
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2_grpc as pb_grpc,
)
from services.common.rpc.channels import ChannelPool


def domain_error(exc: grpc.aio.AioRpcError) -> DomainError:
    """What a compute host's refusal means to the api's caller."""
    code, details = exc.code(), exc.details() or exc.code().name
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return WrongState(details)
    if code == grpc.StatusCode.ABORTED:
        return Aborted(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument("data", details)
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
        request = pb.GetConsoleOutputRequest(instance_uuid=uuid, lines=lines, max_bytes=max_bytes)
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
        request = pb.FollowConsoleOutputRequest(instance_uuid=uuid, lines=lines)
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

    async def attach(
        self, address: str, uuid: str, inputs: AsyncIterator[bytes], *, request_id: str = ""
    ) -> AsyncIterator[bytes]:
        """Guest output as it comes; ``inputs`` are typed into the guest meanwhile. An error
        raised by ``inputs`` (bad input) ends the session with that error."""
        call = self._stub(address).AttachConsole(metadata=request_metadata(request_id))

        async def pump() -> None:
            await call.write(pb.AttachConsoleRequest(instance_uuid=uuid))
            # Wait for the host's answer to the attach before typing or closing our side: its
            # headers once the console is open, or the end of the call when it refuses. A
            # write that races a refusal makes grpc report INTERNAL ("Internal error from
            # Core") in place of the refusal's own status.
            await call.initial_metadata()
            if call.done():
                return
            async for data in inputs:
                await call.write(pb.AttachConsoleRequest(data=data))
            # Input ended: say so, but keep reading (output goes on until cancelled).
            await call.done_writing()

        writer = asyncio.create_task(pump())
        reader: asyncio.Future[object] | None = None
        try:
            while True:
                if reader is None:
                    reader = asyncio.ensure_future(call.read())
                waiting: set[asyncio.Future[object]] = {reader}
                if not writer.done():
                    waiting.add(writer)  # type: ignore[arg-type]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if writer.done() and not writer.cancelled():
                    failure = writer.exception()
                    if isinstance(failure, DomainError):
                        raise failure
                if not reader.done():
                    continue
                reply = reader.result()
                reader = None
                if reply is grpc.aio.EOF:
                    return
                assert isinstance(reply, pb.ConsoleStreamOutput)
                yield reply.data
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc) from exc
        finally:
            call.cancel()
            for task in (writer, reader):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
