"""A real guest on libvirtd + QEMU (TCG): create through the public API, see it boot on its
serial console, delete it, and find nothing left behind."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from services.cli.manage import image_from_files, issue_token, register_image
from services.common.db.engine import Database
from services.common.db.migrate import upgrade
from services.common.db.models import ALLOCATIONS
from services.common.generated.novagrpc.v1 import (
    keypairs_pb2,
    keypairs_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from services.compute.virt.libvirt.host import LibvirtHost
from tests.support.auth import Authed
from tests.support.keys import ed25519_public_key
from tests.support.polling import wait_until
from tests.support.processes import ServiceSet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MARKER = "NOVA-GRPC-GUEST-UP"


def test_tiny_guest_boots_and_delete_cleans_up(
    libvirtd: str, tiny_guest: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    upgrade(url)
    register_image(
        url,
        image_from_files(
            "tiny-guest",
            Path(tiny_guest["kernel"]),
            disk_format="kernel",
            initrd=Path(tiny_guest["initrd"]),
            cmdline=tiny_guest["cmdline"],
        ),
    )
    services = ServiceSet(tmp_path)
    prefix = f"e2e-{uuid.uuid4().hex[:6]}"
    api, _conductor, _computes = services.start_all_in_one(
        url,
        compute_args=[
            "--libvirt-uri", libvirtd, "--virt-type", "qemu",
            "--instance-name-template", prefix + "-%08x",
        ],
    )  # fmt: skip
    instances = tmp_path / "instances1"
    hypervisor = LibvirtHost(libvirtd)
    hypervisor.connect()
    try:
        with grpc.insecure_channel(api.address) as channel:
            _, token = issue_token(url, "demo")
            stub = Authed(servers_pb2_grpc.ServersStub(channel), token)
            keypairs = Authed(keypairs_pb2_grpc.KeypairsStub(channel), token)
            keypairs.ImportKeypair(
                keypairs_pb2.ImportKeypairRequest(name="e2e", public_key=ed25519_public_key()),
                timeout=10,
            )
            marker = f"#!/bin/sh e2e-{uuid.uuid4().hex[:8]}"
            user_data = base64.b64encode(f"{marker}\necho hello\n".encode()).decode()
            started = time.monotonic()
            reply = stub.CreateServer(
                servers_pb2.CreateServerRequest(
                    name="Tiny Guest", flavor_ref="m1.tiny", image_ref="tiny-guest",
                    key_name="e2e", user_data=user_data,
                    block_device_mapping=[servers_pb2.BlockDeviceMapping(
                        source_type="blank", destination_type="local", volume_size=1)],
                ),
                timeout=10,
            )  # fmt: skip
            server_id = reply.server_ids[0]

            def status() -> servers_pb2.Server:
                return stub.GetServer(servers_pb2.GetServerRequest(id=server_id), timeout=10)

            wait_until(lambda: status().status != servers_pb2.SERVER_STATUS_BUILD, 120, "the build")
            server = status()
            assert server.status == servers_pb2.SERVER_STATUS_ACTIVE, server.fault.message
            to_active = time.monotonic() - started
            assert hypervisor.state(server_id) == 1  # VIR_DOMAIN_RUNNING, from libvirtd itself

            console = instances / server_id / "console.log"
            expected = f"{MARKER} uuid={server_id}"
            wait_until(
                lambda: console.exists() and expected in console.read_text(errors="replace"),
                120,
                "the guest's marker on its serial console",
            )
            to_marker = time.monotonic() - started
            print(
                f"\nreal guest: CreateServer -> ACTIVE {to_active:.2f}s, -> marker {to_marker:.2f}s"
            )

            stub.DeleteServer(servers_pb2.DeleteServerRequest(id=server_id), timeout=10)
            wait_until(
                lambda: status().status == servers_pb2.SERVER_STATUS_DELETED, 60, "the delete"
            )
        assert hypervisor.state(server_id) is None  # domain destroyed and undefined
        assert not (instances / server_id).exists()  # disk and console log removed
        db = Database(url)
        try:
            with db.begin_read() as connection:
                held = connection.execute(select(func.count()).select_from(ALLOCATIONS)).scalar()
        finally:
            db.close()
        assert held == 0  # claim released
    finally:
        hypervisor.close()
        codes = services.stop()
    assert set(codes.values()) == {0}, codes
