"""Issue 15 item 4 for the internal mutual TLS of all three services: while servers are
created and deleted (api -> conductor casts, conductor -> compute builds and deletes, compute
-> conductor events and heartbeats), the deployment moves to a new CA the way an operator
does it (both CAs trusted, then new certificates, then only the new CA), replacing files
only, with no restart. No call fails; afterwards every internal server presents its new
certificate and refuses the old CA's, and calls keep passing over connections the clients
opened with their new certificates (the conductor asks for new connections every second)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.certificate_names import first_certificate_der
from services.common.generated.novagrpc.v1 import servers_pb2
from services.common.pki import create_pki
from services.common.tls import INTERNAL_NAME, InternalTls
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.polling import wait_until_async
from tests.support.public_tls import replace_file
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(120)

# the conductor's GOAWAY age: clients reconnect, so new handshakes happen all through the test
CONNECTION_AGE = timedelta(seconds=1)


async def served_certificate(address: str, pki: Path, stem: str) -> bytes:
    """The certificate a fresh TLS connection to ``address`` is shown (DER)."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / f"{stem}.pem", pki / f"{stem}-key.pem")
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    _, writer = await asyncio.open_connection(
        host, int(port), ssl=context, server_hostname=INTERNAL_NAME
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        return der
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def health_code(address: str, pki: Path) -> grpc.StatusCode:
    """A new connection as the api of ``pki``: OK or UNAVAILABLE (refused handshake)."""
    tls = InternalTls.load(str(pki / "ca.pem"), str(pki / "api.pem"), str(pki / "api-key.pem"))
    async with grpc.aio.secure_channel(
        address, tls.channel_credentials(), options=tls.channel_options()
    ) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


class Load:
    """Workers that create a server, wait for it to be ACTIVE and delete it, over and over."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stop = asyncio.Event()
        self.failures: list[str] = []
        self.cycles = 0
        self.started: list[float] = []  # when each completed cycle began (monotonic)

    async def worker(self, index: int) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                reply = await self.stack.servers.CreateServer(create(f"w{index}"), timeout=10)
                uuid = reply.server_ids[0]
                await self.stack.wait_status(uuid, servers_pb2.SERVER_STATUS_ACTIVE, timeout=30)
                await self.stack.servers.DeleteServer(
                    servers_pb2.DeleteServerRequest(id=uuid), timeout=10
                )
            except (grpc.aio.AioRpcError, TimeoutError, AssertionError) as exc:
                self.failures.append(repr(exc))
            self.cycles += 1
            self.started.append(began)

    async def progress(self, cycles: int) -> None:
        """Wait until ``cycles`` more create/delete cycles are done."""
        target = self.cycles + cycles
        await wait_until_async(lambda: self.cycles >= target, 60, f"{cycles} more cycles")

    async def begun_after(self, moment: float, cycles: int) -> None:
        """Wait until ``cycles`` cycles that began after ``moment`` are done."""

        def done() -> bool:
            return sum(began > moment for began in self.started) >= cycles

        await wait_until_async(done, 40, f"{cycles} cycles begun after the rotation")


async def test_all_three_follow_a_ca_rotation_under_load(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.common.tls_reload")
    conductor = {
        "max_connection_age": CONNECTION_AGE,
        "max_connection_age_grace": timedelta(seconds=5),
        "build_stream_max_age": timedelta(seconds=2),
    }
    async with running_stack(sqlite_url, tmp_path, conductor=conductor) as stack:
        await wait_for_compute(sqlite_url)
        live = stack.pki  # the files the three services were started with
        host = f"{tmp_path.name}-compute0"
        new = create_pki(tmp_path / "new", compute_hosts=[host])
        old_ca = (live / "ca.pem").read_bytes()
        old = tmp_path / "old"
        old.mkdir()
        for name in ("ca.pem", "api.pem", "api-key.pem"):
            (old / name).write_bytes((live / name).read_bytes())
        servers = {"conductor": stack.conductor.address, "compute": stack.computes[0].address}
        stems = ["api", "conductor", f"compute-{host}"]

        load = Load(stack)
        workers = [asyncio.create_task(load.worker(i)) for i in range(3)]
        try:
            await load.progress(3)
            # 1. both CAs trusted everywhere
            replace_file(live / "ca.pem", old_ca + (new / "ca.pem").read_bytes())
            await load.progress(3)
            # 2. the new certificates, key first (a mismatched pair is not taken meanwhile)
            for stem in stems:
                replace_file(live / f"{stem}-key.pem", (new / f"{stem}-key.pem").read_bytes())
                replace_file(live / f"{stem}.pem", (new / f"{stem}.pem").read_bytes())
            caplog.clear()  # the reloads of step 1 (same certificates, both CAs) said the same
            for role, address in servers.items():
                wanted = first_certificate_der((new / f"{role}.pem").read_bytes())
                if role == "compute":
                    wanted = first_certificate_der((new / f"compute-{host}.pem").read_bytes())

                async def shows_new(address: str = address, wanted: bytes = wanted) -> bool:
                    return await served_certificate(address, live, "api") == wanted

                await wait_until_async(shows_new, 10, f"{role} to serve its new certificate")
            # every service's client side has taken its new certificate too (a reload logged
            # from now on read the files as they are now: the writes above are done)
            reloaded = f"internal client certificate {live}/%s.pem reloaded"

            def clients_reloaded() -> bool:
                return all(reloaded % stem in caplog.text for stem in stems)

            await wait_until_async(clients_reloaded, 20, "each service's client to reload")
            # 3. the old CA goes
            replace_file(live / "ca.pem", (new / "ca.pem").read_bytes())
            for role, address in servers.items():

                async def refuses_old(address: str = address) -> bool:
                    return await health_code(address, old) == grpc.StatusCode.UNAVAILABLE

                await wait_until_async(refuses_old, 10, f"{role} to refuse the old CA")
                assert await health_code(address, new) == grpc.StatusCode.OK
            # the load runs on. The conductor sends every connection away after a second
            # (GOAWAY, jitter included) and a build stream ends within 2.4 s: cycles begun 3 s
            # after the old CA went run over connections opened with the new certificates only
            await load.begun_after(time.monotonic() + 3 * CONNECTION_AGE.total_seconds(), 6)
        finally:
            load.stop.set()
            await asyncio.gather(*workers)
        assert load.failures == []
        assert load.cycles >= 15
