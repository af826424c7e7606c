"""The three services in this test's event loop, each a real gRPC server on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from services.api.app import start_api
from services.api.settings import ApiSettings
from services.cli.manage import issue_token
from services.common.app import RunningService
from services.common.generated.novagrpc.internal.v1 import compute_pb2, compute_pb2_grpc
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.pki import create_pki, role_settings_env
from services.compute.app import start_compute
from services.compute.console.ports import ConsoleHypervisor
from services.compute.settings import ComputeSettings
from services.compute.virt.driver import VirtDriver
from services.compute.virt.libvirt.console import LibvirtConsoles
from services.compute.virt.libvirt.driver import LibvirtDriver
from services.conductor.app import start_conductor
from services.conductor.settings import ConductorSettings
from tests.support.auth import Authed
from tests.support.polling import wait_until_async
from tests.support.tls import api_aio_channel


@dataclass
class Stack:
    api: RunningService
    conductor: RunningService
    computes: list[RunningService]
    channel: grpc.aio.Channel
    token: str
    admin_token: str
    pki: Path
    exit_hooks: list[Callable[[], None]] = field(default_factory=list)

    def on_exit(self, hook: Callable[[], None]) -> None:
        self.exit_hooks.append(hook)

    @property
    def servers(self) -> Any:
        """The Servers stub as project 'demo' (member)."""
        return Authed(servers_pb2_grpc.ServersStub(self.channel), self.token)

    @property
    def admin(self) -> Any:
        """The Servers stub as an admin (project 'ops')."""
        return Authed(servers_pb2_grpc.ServersStub(self.channel), self.admin_token)

    def servers_as(self, token: str) -> Any:
        return Authed(servers_pb2_grpc.ServersStub(self.channel), token)

    async def compute_status(self, index: int = 0) -> compute_pb2.ComputeStatus:
        async with api_aio_channel(self.computes[index].address, self.pki) as channel:
            stub = compute_pb2_grpc.ComputeStub(channel)
            status: compute_pb2.ComputeStatus = await stub.GetComputeStatus(
                compute_pb2.GetComputeStatusRequest(), timeout=5
            )
            return status

    async def wait_status(
        self, server_id: str, wanted: int, timeout: float = 20
    ) -> servers_pb2.Server:
        seen: list[servers_pb2.Server] = []

        async def reached() -> servers_pb2.Server | None:
            server = await self.admin.GetServer(
                servers_pb2.GetServerRequest(id=server_id), timeout=5
            )
            seen[:] = [server]
            return server if server.status == wanted else None

        status = servers_pb2.ServerStatus.Name(wanted)
        found = await wait_until_async(
            reached, timeout, f"server {server_id} to reach {status}",
            last=lambda: servers_pb2.ServerStatus.Name(seen[0].status) if seen else "nothing",
        )  # fmt: skip
        assert found is not None
        return found

    async def wait_settled(self, ids: list[str], timeout: float = 20) -> list[servers_pb2.Server]:
        """Poll (as an admin, who sees every project) until none of ``ids`` is in BUILD."""
        seen: list[servers_pb2.Server] = []

        async def settled() -> list[servers_pb2.Server]:
            seen[:] = [
                await self.admin.GetServer(servers_pb2.GetServerRequest(id=i), timeout=5)
                for i in ids
            ]
            return seen if all(s.status != servers_pb2.SERVER_STATUS_BUILD for s in seen) else []

        return await wait_until_async(
            settled, timeout, f"{len(ids)} servers to leave BUILD",
            last=lambda: [servers_pb2.ServerStatus.Name(s.status) for s in seen],
        )  # fmt: skip


@asynccontextmanager
async def running_stack(
    database_url: str,
    tmp_path: Path,
    *,
    computes: int = 1,
    wrap_driver: Callable[[LibvirtDriver], VirtDriver] | None = None,
    wrap_consoles: Callable[[LibvirtConsoles], ConsoleHypervisor] | None = None,
    name_template: str = "%(uuid)s",
    per_compute: Sequence[Mapping[str, Any]] = (),
    conductor: Mapping[str, Any] | None = None,
    api: Mapping[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    """Quotas are unlimited unless ``api`` sets them: most tests are about other things."""
    pki = create_pki(tmp_path / "pki")

    def tls(role: str, host: str = "") -> dict[str, str]:
        env = role_settings_env(pki, role, host=host)
        return {
            "internal_tls_ca": env["NOVA_GRPC_INTERNAL_TLS_CA"],
            "internal_tls_cert": env["NOVA_GRPC_INTERNAL_TLS_CERT"],
            "internal_tls_key": env["NOVA_GRPC_INTERNAL_TLS_KEY"],
        }

    conductor_service = await start_conductor(
        ConductorSettings(
            listen="127.0.0.1:0", database_url=database_url, **tls("conductor"), **(conductor or {})
        )
    )
    base = ComputeSettings(**tls("compute"))
    compute_services = []
    for i in range(computes):
        settings = replace(
            base,
            listen="127.0.0.1:0",
            host=f"{tmp_path.name}-compute{i}",
            conductor_addresses=(conductor_service.address,),
            instances_path=str(tmp_path / f"instances{i}"),
            # test:///default is one hypervisor per process, shared by every test here:
            # name domains by uuid so that ids from different databases never clash.
            instance_name_template=name_template,
        )
        if i < len(per_compute):
            settings = replace(settings, **per_compute[i])
        # each compute presents the certificate of its own host (the conductor checks it)
        settings = replace(settings, **tls("compute", settings.host))
        compute_services.append(
            await start_compute(settings, wrap_driver=wrap_driver, wrap_consoles=wrap_consoles)
        )
    api_settings: dict[str, Any] = {
        "quota_instances": -1,
        "quota_cores": -1,
        "quota_ram": -1,
        "image_store_path": str(tmp_path / "images"),
        **tls("api"),
        **(api or {}),
    }
    api_service = await start_api(
        ApiSettings(
            listen="127.0.0.1:0",
            database_url=database_url,
            conductor_addresses=(conductor_service.address,),
            **api_settings,
        )
    )
    channel = grpc.aio.insecure_channel(api_service.address)
    _, token = issue_token(database_url, "demo")
    _, admin_token = issue_token(database_url, "ops", admin=True)
    stack = Stack(
        api_service, conductor_service, compute_services, channel, token, admin_token, pki
    )
    try:
        yield stack
    finally:
        for hook in stack.exit_hooks:
            hook()
        await channel.close()
        await api_service.stop()
        for service in compute_services:
            await service.stop()
        await conductor_service.stop()
