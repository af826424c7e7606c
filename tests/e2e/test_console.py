"""The serial console of a real guest (libvirtd + QEMU, TCG) through the public API: its log,
an interactive shell session, takeover, and nothing leaking over many attach/detach cycles
or when the session ends because the server stops, is deleted or its compute restarts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from services.cli.manage import image_from_files, issue_token, register_image
from services.common.db.migrate import upgrade
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2,
    compute_console_pb2_grpc,
)
from services.common.generated.novagrpc.v1 import (
    consoles_pb2,
    consoles_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from tests.support.auth import Authed
from tests.support.polling import wait_until
from tests.support.processes import Service, ServiceSet
from tests.support.tls import api_aio_channel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

READY = b"NOVA-GRPC-READY"
CYCLES = int(os.environ.get("NOVA_GRPC_CONSOLE_CYCLES", "1000"))


@dataclass
class Guest:
    services: ServiceSet
    api: Service
    conductor: Service
    compute: Service
    token: str
    server_id: str
    compute_args: list[str]


def _servers(api: Service, token: str) -> tuple[grpc.Channel, object]:
    channel = grpc.insecure_channel(api.address)
    return channel, Authed(servers_pb2_grpc.ServersStub(channel), token)


@pytest.fixture
def guest(libvirtd: str, tiny_guest: dict[str, str], tmp_path: Path) -> Iterator[Guest]:
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    upgrade(url)
    register_image(
        url,
        image_from_files(
            "tiny-guest", Path(tiny_guest["kernel"]), disk_format="kernel",
            initrd=Path(tiny_guest["initrd"]), cmdline=tiny_guest["cmdline"],
        ),
    )  # fmt: skip
    services = ServiceSet(tmp_path)
    prefix = f"e2e-{uuid.uuid4().hex[:6]}"
    compute_args = [
        "--libvirt-uri", libvirtd, "--virt-type", "qemu",
        "--instance-name-template", prefix + "-%08x", "--clean-shutdown-timeout", "2",
    ]  # fmt: skip
    api, conductor, computes = services.start_all_in_one(url, compute_args=compute_args)
    _, token = issue_token(url, "demo")
    channel, stub = _servers(api, token)
    server_id = ""
    try:
        reply = stub.CreateServer(  # type: ignore[attr-defined]
            servers_pb2.CreateServerRequest(
                name="console", flavor_ref="m1.tiny", image_ref="tiny-guest"
            ),
            timeout=10,
        )
        server_id = reply.server_ids[0]
        wait_until(
            lambda: (
                stub.GetServer(  # type: ignore[attr-defined]
                    servers_pb2.GetServerRequest(id=server_id), timeout=10
                ).status
                == servers_pb2.SERVER_STATUS_ACTIVE
            ),
            120,
            "ACTIVE",
        )
        yield Guest(services, api, conductor, computes[0], token, server_id, compute_args)
    finally:
        try:
            if server_id:
                _delete(stub, server_id)
        finally:  # whatever happened: no service of this test outlives it
            channel.close()
            services.stop()


def _delete(stub: object, server_id: str) -> None:
    """Best effort: the test may have deleted it already, or failed half-way."""
    try:
        stub.DeleteServer(  # type: ignore[attr-defined]
            servers_pb2.DeleteServerRequest(id=server_id), timeout=10
        )
        wait_until(
            lambda: (
                stub.GetServer(  # type: ignore[attr-defined]
                    servers_pb2.GetServerRequest(id=server_id), timeout=10
                ).status
                == servers_pb2.SERVER_STATUS_DELETED
            ),
            60,
            "DELETED",
        )
    except (grpc.RpcError, TimeoutError) as exc:
        print(f"cleanup of {server_id}: {exc}")


class Session:
    """One AttachConsole call and everything it has printed so far."""

    def __init__(self, channel: grpc.aio.Channel, token: str, server_id: str) -> None:
        stub = Authed(consoles_pb2_grpc.ConsolesStub(channel), token)
        self.call = stub.AttachConsole(None)
        self.server_id = server_id
        self.output = b""

    async def open(self, data: bytes = b"") -> Session:
        request = consoles_pb2.AttachConsoleRequest(server_id=self.server_id, data=data)
        await self.call.write(request)
        return self

    async def type(self, text: str) -> None:
        await self.call.write(consoles_pb2.AttachConsoleRequest(data=text.encode()))

    async def expect(self, wanted: bytes, timeout: float = 60) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while wanted not in self.output:
            message = await asyncio.wait_for(self.call.read(), deadline - loop.time())
            if message is grpc.aio.EOF:
                raise AssertionError(f"stream ended before {wanted!r}: {self.output[-500:]!r}")
            self.output += message.data
        return self.output

    async def ended(self, timeout: float = 60) -> grpc.StatusCode:
        """Reads to the end; the status the stream ended with."""
        try:
            while await asyncio.wait_for(self.call.read(), timeout) is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return await self.call.code()


def public(guest: Guest) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(guest.api.address)


async def compute_sessions(guest: Guest, compute: Service | None = None) -> int:
    async with api_aio_channel((compute or guest.compute).address, guest.services.pki) as ch:
        stub = compute_console_pb2_grpc.ComputeConsoleStub(ch)
        status = await stub.GetConsoleStatus(
            compute_console_pb2.GetConsoleStatusRequest(), timeout=10
        )
        return int(status.open_sessions)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def wait_for_log(guest: Guest, channel: grpc.aio.Channel, wanted: bytes) -> bytes:
    stub = Authed(consoles_pb2_grpc.ConsolesStub(channel), guest.token)
    request = consoles_pb2.GetConsoleOutputRequest(server_id=guest.server_id)
    for _ in range(600):
        reply = await stub.GetConsoleOutput(request, timeout=10)
        if wanted in reply.output:
            return bytes(reply.output)
        await asyncio.sleep(0.2)
    raise AssertionError(f"{wanted!r} never in the console log")


async def test_console_log_shell_and_takeover(guest: Guest) -> None:
    async with public(guest) as channel:
        log = await wait_for_log(guest, channel, READY)
        assert f"NOVA-GRPC-GUEST-UP uuid={guest.server_id}".encode() in log
        stub = Authed(consoles_pb2_grpc.ConsolesStub(channel), guest.token)
        last = await stub.GetConsoleOutput(
            consoles_pb2.GetConsoleOutputRequest(server_id=guest.server_id, lines=1), timeout=10
        )
        assert last.output.count(b"\n") <= 1 and last.truncated

        # A command typed into the guest's shell, and its answer.
        token = uuid.uuid4().hex[:8]
        session = await Session(channel, guest.token, guest.server_id).open(b"\r")
        await session.type(f"echo tok-$((40+2))-{token}\r")
        await session.expect(f"tok-42-{token}".encode())
        await session.type("ip addr\r")
        await session.expect(b"127.0.0.1")
        # The session's output is logged too.
        await wait_for_log(guest, channel, f"tok-42-{token}".encode())

        # A second session takes over; the first ends ABORTED.
        second = await Session(channel, guest.token, guest.server_id).open(b"\r")
        assert await session.ended() == grpc.StatusCode.ABORTED
        await second.type("echo second-$((1+1))\r")
        await second.expect(b"second-2")
        second.call.cancel()


@pytest.mark.timeout(900)
async def test_attach_detach_cycles_leak_nothing(guest: Guest) -> None:
    async with public(guest) as channel:
        await wait_for_log(guest, channel, READY)
        # Attach/detach cycles: the compute's fds and memory stay where they were. QEMU's
        # pty notices a new reader within a second, so typing into every one of 1,000
        # sessions would take a quarter of an hour: each cycle waits until compute has the
        # session open (its libvirt stream), every 100th also checks the shell answers.
        pid = guest.compute.process.pid
        async with api_aio_channel(guest.compute.address, guest.services.pki) as internal:
            status_stub = compute_console_pb2_grpc.ComputeConsoleStub(internal)

            async def status() -> compute_console_pb2.ConsoleStatus:
                reply: compute_console_pb2.ConsoleStatus = await status_stub.GetConsoleStatus(
                    compute_console_pb2.GetConsoleStatusRequest(), timeout=10
                )
                return reply

            async def cycle(i: int) -> None:
                opened = (await status()).opened_total
                if i % 100 == 0:
                    s = await Session(channel, guest.token, guest.server_id).open(b"\r")
                    await s.type(f"echo c-$(({i}+1))\r")
                    await s.expect(f"c-{i + 1}".encode(), 30)
                else:
                    s = await Session(channel, guest.token, guest.server_id).open()
                    for _ in range(1000):  # each call is a round trip: no sleep needed
                        if (await status()).opened_total > opened:
                            break
                    else:
                        raise AssertionError(f"cycle {i}: the session never opened")
                s.call.cancel()

            for i in range(20):  # warm up: threads, channels, caches
                await cycle(i)
            for _ in range(1000):
                if (await status()).open_sessions == 0:
                    break
            fds, rss = open_fds(pid), rss_kib(pid)
            started = asyncio.get_running_loop().time()
            for i in range(CYCLES):
                await cycle(i)
                if i % 100 == 99:
                    took = asyncio.get_running_loop().time() - started
                    print(
                        f"{i + 1} cycles, {took:.1f}s, fds {open_fds(pid)}, RSS {rss_kib(pid)} KiB",
                        flush=True,
                    )
            took = asyncio.get_running_loop().time() - started
            for _ in range(1000):
                if (await status()).open_sessions == 0:
                    break
            assert (await status()).open_sessions == 0
        print(f"\n{CYCLES} console cycles in {took:.1f}s; fds {fds} -> {open_fds(pid)}, "
              f"RSS {rss} -> {rss_kib(pid)} KiB")  # fmt: skip
        assert open_fds(pid) <= fds + 2
        assert rss_kib(pid) <= rss + 20 * 1024


async def test_stop_delete_and_compute_restart_end_sessions_cleanly(guest: Guest) -> None:
    async with public(guest) as channel:
        await wait_for_log(guest, channel, READY)
        servers = Authed(servers_pb2_grpc.ServersStub(channel), guest.token)

        # The compute restarts: the session ends UNAVAILABLE, and a new compute serves again.
        session = await Session(channel, guest.token, guest.server_id).open(b"echo a-$((2*2))\r")
        await session.expect(b"a-4")
        guest.compute.process.terminate()
        assert await session.ended() == grpc.StatusCode.UNAVAILABLE
        assert guest.compute.process.wait(30) == 0
        guest.services.services.remove(guest.compute)
        compute = guest.services.start(
            "compute1b",
            "services.compute",
            guest.services._compute_args(1, guest.conductor, guest.compute_args),
            role="compute",
        )
        guest.compute = compute
        for _ in range(300):  # the api finds the new address through the node's heartbeat
            try:
                session = await Session(channel, guest.token, guest.server_id).open(b"\r")
                await session.type("echo b-$((3*3))\r")
                await session.expect(b"b-9", 30)
                break
            except (grpc.aio.AioRpcError, AssertionError):
                await asyncio.sleep(0.2)
        else:
            raise AssertionError("no console after the compute restarted")

        # Stopping the server ends the session; the guest's side closes.
        await servers.StopServer(servers_pb2.StopServerRequest(id=guest.server_id), timeout=10)
        assert await session.ended(90) in {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
        for _ in range(300):
            server = await servers.GetServer(
                servers_pb2.GetServerRequest(id=guest.server_id), timeout=10
            )
            if server.status == servers_pb2.SERVER_STATUS_SHUTOFF:
                break
            await asyncio.sleep(0.2)
        refused = await Session(channel, guest.token, guest.server_id).open()
        assert await refused.ended() == grpc.StatusCode.FAILED_PRECONDITION

        # Started again and deleted while attached: the session ends, nothing stays open.
        await servers.StartServer(servers_pb2.StartServerRequest(id=guest.server_id), timeout=10)
        for _ in range(600):
            server = await servers.GetServer(
                servers_pb2.GetServerRequest(id=guest.server_id), timeout=10
            )
            if server.status == servers_pb2.SERVER_STATUS_ACTIVE and not server.task_state:
                break
            await asyncio.sleep(0.2)
        session = await Session(channel, guest.token, guest.server_id).open()
        await session.expect(READY, 120)  # attached during boot: wait for the shell
        await session.type("\recho c-$((4*4))\r")
        await session.expect(b"c-16", 90)
        await servers.DeleteServer(servers_pb2.DeleteServerRequest(id=guest.server_id), timeout=10)
        assert await session.ended(60) in {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
        assert await compute_sessions(guest, compute) == 0
        after = await Session(channel, guest.token, guest.server_id).open(b"x")
        assert await after.ended() in {
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION,
        }


async def test_guest_ready_comes_from_the_guest_after_active(guest: Guest) -> None:
    """A second guest created with ``novactl server create --wait-ready``: the project's
    WatchServers stream shows it ACTIVE without guest_ready first, then guest_ready (set
    from inside the guest), and its shell answers after that."""
    async with public(guest) as channel:
        servers = Authed(servers_pb2_grpc.ServersStub(channel), guest.token)
        watch = servers.WatchServers(servers_pb2.WatchServersRequest(), timeout=200)
        await watch.read()  # the snapshot (the fixture's server), before the create
        novactl = str(Path(sys.executable).with_name("novactl"))
        process = await asyncio.create_subprocess_exec(
            novactl, "--endpoint", f"http://{guest.api.address}", "--token", guest.token,
            "-o", "json", "server", "create", "--flavor", "m1.tiny", "--image", "tiny-guest",
            "--name", "ready", "--wait-ready", "--wait-timeout", "180",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 200)
        returned = asyncio.get_running_loop().time()
        assert process.returncode == 0, stderr.decode()
        [created] = json.loads(stdout)["servers"]
        assert created["guest_ready"], created
        server_id = created["id"]

        seen: list[servers_pb2.Server] = []
        while not (seen and seen[-1].HasField("guest_ready")):
            event = await asyncio.wait_for(watch.read(), 60)
            if event.server.id == server_id:
                seen.append(event.server)
        watch.cancel()
        first_active = next(s for s in seen if s.status == servers_pb2.SERVER_STATUS_ACTIVE)
        assert not first_active.HasField("guest_ready")  # ACTIVE came first, without it
        ready = seen[-1]
        assert ready.guest_ready.ToDatetime() >= ready.launched_at.ToDatetime()

        session = await Session(channel, guest.token, server_id).open(b"\r")
        await session.type("echo up-$((5*5))\r")
        await session.expect(b"up-25")
        assert asyncio.get_running_loop().time() >= returned
        session.call.cancel()
        log = await wait_for_log(
            Guest(guest.services, guest.api, guest.conductor, guest.compute, guest.token,
                  server_id, guest.compute_args),
            channel, READY,
        )  # fmt: skip
        assert b"NOVA-GRPC-NETWORK" in log
        await servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server_id), timeout=10)
