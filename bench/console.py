"""A real guest's console (libvirtd + QEMU, TCG): CreateServer -> guest_ready (the guest's
own report), and the console round trip (one byte typed through api and compute into the
guest's shell, and its echo back). Skipped, with a line saying why, where libvirtd cannot
run."""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from bench.real_guest import GUEST_DIR, _prepare
from services.cli.launcher import Launcher
from services.cli.manage import image_from_files, issue_token, register_image
from services.common.db.migrate import upgrade
from services.common.generated.novagrpc.v1 import (
    consoles_pb2,
    consoles_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from services.common.pki import create_pki, role_settings_env

ROUND_TRIPS = 300


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _measure(api: str, token: str) -> tuple[float, list[float]]:
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(api) as channel:
        servers = servers_pb2_grpc.ServersStub(channel)
        started = time.perf_counter()
        reply = await servers.CreateServer(
            servers_pb2.CreateServerRequest(
                name="bench-console", flavor_ref="m1.tiny", image_ref="tiny-guest"
            ),
            timeout=10, metadata=metadata,
        )  # fmt: skip
        server_id = reply.server_ids[0]
        watch = servers.WatchServers(
            servers_pb2.WatchServersRequest(server_id=server_id), timeout=180, metadata=metadata
        )
        async for event in watch:
            if event.server.HasField("guest_ready"):
                break
        to_ready = time.perf_counter() - started
        watch.cancel()

        call = consoles_pb2_grpc.ConsolesStub(channel).AttachConsole(metadata=metadata)
        await call.write(consoles_pb2.AttachConsoleRequest(server_id=server_id, data=b"\r"))
        output = b""
        while b"# " not in output:  # the shell's prompt
            message = await asyncio.wait_for(call.read(), 60)
            output += message.data
        samples = []
        for i in range(ROUND_TRIPS):
            key = b"x" if i % 2 == 0 else b"\x7f"  # type a letter, then rub it out
            sent = time.perf_counter()
            await call.write(consoles_pb2.AttachConsoleRequest(data=key))
            await asyncio.wait_for(call.read(), 10)  # the tty's echo
            samples.append(time.perf_counter() - sent)
        call.cancel()
        await servers.DeleteServer(
            servers_pb2.DeleteServerRequest(id=server_id), timeout=10, metadata=metadata
        )
        return to_ready, samples


def run_console(workdir: Path) -> list[dict[str, Any]]:
    why = _prepare()
    if why is not None:
        print(f"console: skipped ({why})")
        return []
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "run").mkdir(parents=True)
    url = f"sqlite:///{workdir / 'nova.sqlite'}"
    upgrade(url)
    manifest = json.loads((GUEST_DIR / "manifest.json").read_text())
    register_image(url, image_from_files(
        "tiny-guest", Path(manifest["kernel"]), disk_format="kernel",
        initrd=Path(manifest["initrd"]), cmdline=manifest["cmdline"],
    ))  # fmt: skip
    launcher = Launcher(workdir)
    pki = create_pki(workdir / "pki")
    log = workdir / "services.log"
    try:
        conductor = launcher.start(
            "conductor", "services.conductor",
            ["--listen", "127.0.0.1:0", "--database-url", url], log=log,
            env=role_settings_env(pki, "conductor"),
        )  # fmt: skip
        launcher.start(
            "compute", "services.compute",
            ["--listen", "127.0.0.1:0", "--conductor-addresses", conductor, "--host", "real",
             "--libvirt-uri", "qemu:///system", "--virt-type", "qemu",
             "--instances-path", str(workdir / "instances"),
             "--instance-name-template", f"bench-{uuid.uuid4().hex[:6]}-%08x"], log=log,
            env=role_settings_env(pki, "compute"),
        )  # fmt: skip
        api = launcher.start(
            "api", "services.api",
            ["--listen", "127.0.0.1:0", "--database-url", url, "--conductor-addresses", conductor],
            log=log, env=role_settings_env(pki, "api"),
        )  # fmt: skip
        time.sleep(1.0)  # as bench.real_guest: let compute register before the create
        _, token = issue_token(url, "bench")
        to_ready, samples = asyncio.run(_measure(api, token))
    finally:
        launcher.stop()
    conditions = "tiny guest, m1.tiny, qemu TCG; api and compute over mutual TLS"
    ms = [s * 1000 for s in samples]
    return [
        {"figure": "real guest CreateServer -> guest_ready", "value": to_ready, "unit": "s",
         "conditions": conditions},
        {"figure": "console round trip (byte typed -> echoed) p50", "unit": "ms",
         "value": statistics.median(ms), "conditions": f"{len(ms)} keys, {conditions}"},
        {"figure": "console round trip (byte typed -> echoed) p99", "unit": "ms",
         "value": _percentile(ms, 0.99), "conditions": f"{len(ms)} keys, {conditions}"},
    ]  # fmt: skip
