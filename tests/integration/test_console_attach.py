"""AttachConsole through the real api and compute services (gRPC on port 0, mutual TLS
between them). libvirt's test hypervisor has no guest, so the compute's console port is an
echo double here (tests.support.consoles); the real one is exercised in tests/e2e."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from services.cli.manage import issue_token
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2,
    compute_console_pb2_grpc,
)
from services.common.generated.novagrpc.v1 import consoles_pb2, consoles_pb2_grpc, servers_pb2
from tests.integration.test_api_servers import rich_detail
from tests.integration.test_pipeline import create, field_violation, wait_for_compute
from tests.support.auth import Authed
from tests.support.consoles import EchoConsoles
from tests.support.polling import wait_until_async
from tests.support.stack import Stack, running_stack
from tests.support.tls import api_aio_channel

pytestmark = pytest.mark.timeout(90)


@asynccontextmanager
async def echo_stack(
    url: str, tmp_path: Path, **api: Any
) -> AsyncIterator[tuple[Stack, EchoConsoles]]:
    consoles = EchoConsoles(tmp_path)
    async with running_stack(
        url, tmp_path, wrap_consoles=lambda _real: consoles, api=api or None
    ) as stack:
        await wait_for_compute(url)
        yield stack, consoles


async def active_server(stack: Stack, name: str = "con") -> str:
    reply = await stack.servers.CreateServer(create(name), timeout=5)
    await stack.wait_status(reply.server_ids[0], servers_pb2.SERVER_STATUS_ACTIVE)
    return str(reply.server_ids[0])


def attach(stack: Stack, token: str | None = None, **kwargs: Any) -> Any:
    stub = Authed(consoles_pb2_grpc.ConsolesStub(stack.channel), token or stack.token)
    return stub.AttachConsole(None, **kwargs)


async def open_sessions(stack: Stack) -> int:
    async with api_aio_channel(stack.computes[0].address, stack.pki) as channel:
        stub = compute_console_pb2_grpc.ComputeConsoleStub(channel)
        status = await stub.GetConsoleStatus(
            compute_console_pb2.GetConsoleStatusRequest(), timeout=5
        )
        return int(status.open_sessions)


async def wait_sessions(stack: Stack, consoles: EchoConsoles, wanted: int) -> None:
    """Both ends of the cleanup: the compute's sessions and the console port's streams."""
    seen: list[int] = []

    async def closed() -> bool:
        seen[:] = [await open_sessions(stack)]
        return seen[0] == wanted and consoles.open_handles == wanted

    await wait_until_async(
        closed, 10, f"{wanted} open console sessions",
        last=lambda: f"sessions {seen}, streams {consoles.open_handles}",
    )  # fmt: skip


async def test_typed_bytes_come_back_and_cancelling_frees_everything(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with echo_stack(sqlite_url, tmp_path) as (stack, consoles):
        server_id = await active_server(stack)
        for cycle in range(50):
            call = attach(stack)
            await call.write(
                consoles_pb2.AttachConsoleRequest(server_id=server_id, data=b"echo %d\r" % cycle)
            )
            chunk = await asyncio.wait_for(call.read(), 10)
            assert chunk.data == b"echo %d\r" % cycle
            await call.write(consoles_pb2.AttachConsoleRequest(data=b"more"))
            assert (await asyncio.wait_for(call.read(), 10)).data == b"more"
            call.cancel()
        await wait_sessions(stack, consoles, 0)
        assert consoles.opened == 50

        # A deadline ends it the same way.
        call = attach(stack, timeout=0.5)
        await call.write(consoles_pb2.AttachConsoleRequest(server_id=server_id))
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await call.read()
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await wait_sessions(stack, consoles, 0)

        # Closing the input side keeps the output coming (a scripted one-shot command).
        call = attach(stack)
        await call.write(consoles_pb2.AttachConsoleRequest(server_id=server_id, data=b"uname\r"))
        await call.done_writing()
        assert (await asyncio.wait_for(call.read(), 10)).data == b"uname\r"
        call.cancel()
        await wait_sessions(stack, consoles, 0)


async def test_a_second_attach_takes_over_and_the_first_ends_aborted(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with echo_stack(sqlite_url, tmp_path) as (stack, consoles):
        server_id = await active_server(stack)
        first = attach(stack)
        await first.write(consoles_pb2.AttachConsoleRequest(server_id=server_id, data=b"1"))
        assert (await asyncio.wait_for(first.read(), 10)).data == b"1"
        second = attach(stack)
        await second.write(consoles_pb2.AttachConsoleRequest(server_id=server_id, data=b"2"))
        assert (await asyncio.wait_for(second.read(), 10)).data == b"2"
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(first.read(), 10)
        assert ended.value.code() == grpc.StatusCode.ABORTED
        assert "took over" in (ended.value.details() or "")
        await second.write(consoles_pb2.AttachConsoleRequest(data=b"3"))
        assert (await asyncio.wait_for(second.read(), 10)).data == b"3"
        second.cancel()
        await wait_sessions(stack, consoles, 0)


async def test_the_guest_going_away_ends_the_stream_ok(sqlite_url: str, tmp_path: Path) -> None:
    async with echo_stack(sqlite_url, tmp_path) as (stack, consoles):
        server_id = await active_server(stack)
        call = attach(stack)
        await call.write(consoles_pb2.AttachConsoleRequest(server_id=server_id, data=b"x"))
        assert (await asyncio.wait_for(call.read(), 10)).data == b"x"
        consoles.drop_stream(server_id)  # the hypervisor's side ends, the guest runs on:
        await call.write(consoles_pb2.AttachConsoleRequest(data=b"y"))  # the session goes on
        assert (await asyncio.wait_for(call.read(), 10)).data == b"y"
        consoles.stop_guest(server_id)
        assert await asyncio.wait_for(call.read(), 10) is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        await wait_sessions(stack, consoles, 0)


async def refusal(
    call: Any, first: consoles_pb2.AttachConsoleRequest | None
) -> grpc.aio.AioRpcError:
    if first is not None:
        await call.write(first)
    await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while await asyncio.wait_for(call.read(), 10) is not grpc.aio.EOF:
            pass
    return caught.value


async def test_isolation_and_bad_input(sqlite_url: str, tmp_path: Path) -> None:
    async with echo_stack(sqlite_url, tmp_path, console_sessions_per_project=2) as (
        stack,
        consoles,
    ):
        server_id = await active_server(stack)

        _, other = issue_token(sqlite_url, "other-project")
        naming = consoles_pb2.AttachConsoleRequest(server_id=server_id)
        hidden = await refusal(attach(stack, other), naming)
        assert hidden.code() == grpc.StatusCode.NOT_FOUND

        unnamed = await refusal(attach(stack), consoles_pb2.AttachConsoleRequest(data=b"x"))
        assert unnamed.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violation(unnamed) == "server_id"
        empty = await refusal(attach(stack), None)
        assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT

        big = attach(stack)
        await big.write(consoles_pb2.AttachConsoleRequest(server_id=server_id, data=b"a"))
        assert (await asyncio.wait_for(big.read(), 10)).data == b"a"
        await big.write(consoles_pb2.AttachConsoleRequest(data=b"x" * 5000))
        with pytest.raises(grpc.aio.AioRpcError) as oversized:
            while await asyncio.wait_for(big.read(), 10) is not grpc.aio.EOF:
                pass
        assert oversized.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violation(oversized.value) == "data"
        await wait_sessions(stack, consoles, 0)


async def test_the_per_project_limit_and_a_stopped_server(sqlite_url: str, tmp_path: Path) -> None:
    async with echo_stack(sqlite_url, tmp_path, console_sessions_per_project=2) as (
        stack,
        consoles,
    ):
        server_id = await active_server(stack)
        # Two open sessions (on two servers) are the limit; a third is refused.
        other_server = await active_server(stack, "con2")
        held = []
        for target in (server_id, other_server):
            call = attach(stack)
            await call.write(consoles_pb2.AttachConsoleRequest(server_id=target, data=b"."))
            assert (await asyncio.wait_for(call.read(), 10)).data == b"."
            held.append(call)
        over = await refusal(attach(stack), consoles_pb2.AttachConsoleRequest(server_id=server_id))
        assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        detail = rich_detail(over, error_details_pb2.QuotaFailure)
        assert detail.violations[0].subject == "console_sessions"  # type: ignore[attr-defined]
        # Another project has its own budget.
        _, third = issue_token(sqlite_url, "third-project")
        elsewhere = await refusal(
            attach(stack, third), consoles_pb2.AttachConsoleRequest(server_id=server_id)
        )
        assert elsewhere.code() == grpc.StatusCode.NOT_FOUND
        held[0].cancel()
        await wait_sessions(stack, consoles, 1)
        again = attach(stack)
        await again.write(consoles_pb2.AttachConsoleRequest(server_id=server_id, data=b"!"))
        assert (await asyncio.wait_for(again.read(), 10)).data == b"!"
        again.cancel()
        held[1].cancel()
        await wait_sessions(stack, consoles, 0)

        await stack.servers.StopServer(servers_pb2.StopServerRequest(id=server_id), timeout=5)
        await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_SHUTOFF)
        naming = consoles_pb2.AttachConsoleRequest(server_id=server_id)
        stopped = await refusal(attach(stack), naming)
        assert stopped.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_test_hypervisor_refuses_to_attach(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        server_id = await active_server(stack)
        call = attach(stack)
        await call.write(consoles_pb2.AttachConsoleRequest(server_id=server_id))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), 10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "test hypervisor" in (refused.value.details() or "")
