"""One real guest on libvirtd + QEMU (TCG): CreateServer -> ACTIVE and -> the guest's own
marker line on its serial console. Skipped, with a line saying why, where libvirtd cannot run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from services.cli.launcher import Launcher
from services.cli.manage import image_from_files, issue_token, register_image
from services.common.db.migrate import upgrade
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.pki import create_pki, role_settings_env
from tests.support.libvirtd import ensure_libvirtd
from tests.support.polling import wait_until

REPO = Path(__file__).resolve().parents[1]
GUEST_DIR = REPO / "var" / "images" / "tiny-guest"
MARKER = "NOVA-GRPC-GUEST-UP"


def tiny_guest() -> dict[str, str] | str:
    """The tiny guest's manifest (kernel, initrd, cmdline), built when missing, or why there
    is none."""
    built = subprocess.run(
        [sys.executable, str(REPO / "deploy/guest/build_guest_image.py"), "--out", str(GUEST_DIR)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        return f"the tiny guest could not be built: {built.stderr.strip()[-200:]}"
    manifest: dict[str, str] = json.loads((GUEST_DIR / "manifest.json").read_text())
    return manifest


def _prepare() -> dict[str, str] | str:
    """The guest's manifest when ready, else why the real-guest figures are skipped."""
    try:
        ensure_libvirtd()
    except Exception as exc:
        return f"libvirtd cannot run here: {exc}"
    return tiny_guest()


def run_real_guest(workdir: Path) -> list[dict[str, Any]]:
    manifest = _prepare()
    if isinstance(manifest, str):
        print(f"real guest: skipped ({manifest})")
        return []
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "run").mkdir(parents=True)
    url = f"sqlite:///{workdir / 'nova.sqlite'}"
    upgrade(url)
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
            env=role_settings_env(pki, "compute", host="real"),
        )  # fmt: skip
        api = launcher.start(
            "api", "services.api",
            ["--listen", "127.0.0.1:0", "--database-url", url, "--conductor-addresses", conductor],
            log=log,
            env=role_settings_env(pki, "api"),
        )  # fmt: skip
        time.sleep(1.0)
        with grpc.insecure_channel(api) as channel:
            _, token = issue_token(url, "bench")
            metadata = (("authorization", f"Bearer {token}"),)
            stub = servers_pb2_grpc.ServersStub(channel)
            started = time.perf_counter()
            reply = stub.CreateServer(
                servers_pb2.CreateServerRequest(
                    name="bench", flavor_ref="m1.tiny", image_ref="tiny-guest"
                ),
                timeout=10,
                metadata=metadata,
            )
            server_id = reply.server_ids[0]

            def status() -> int:
                found = stub.GetServer(
                    servers_pb2.GetServerRequest(id=server_id), timeout=10, metadata=metadata
                )
                return int(found.status)

            # poll every 10 ms: the figures are the times these waits end
            wait_until(
                lambda: status() != servers_pb2.SERVER_STATUS_BUILD, 120, "the build", interval=0.01
            )
            to_active = time.perf_counter() - started
            console = workdir / "instances" / server_id / "console.log"
            wait_until(
                lambda: console.exists() and MARKER in console.read_text(errors="replace"),
                120, "the guest's marker on its serial console", interval=0.01,
            )  # fmt: skip
            to_marker = time.perf_counter() - started
            stub.DeleteServer(
                servers_pb2.DeleteServerRequest(id=server_id), timeout=10, metadata=metadata
            )
            wait_until(
                lambda: status() == servers_pb2.SERVER_STATUS_DELETED, 60, "the delete",
                interval=0.01,
            )  # fmt: skip
    finally:
        launcher.stop()
    conditions = "tiny guest (Debian cloud kernel + busybox initramfs), m1.tiny, qemu TCG"
    return [
        {"figure": "real guest CreateServer -> ACTIVE", "value": to_active, "unit": "s",
         "conditions": conditions},
        {"figure": "real guest CreateServer -> console marker", "value": to_marker, "unit": "s",
         "conditions": conditions},
    ]  # fmt: skip
