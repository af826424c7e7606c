"""Flavors, images, keypairs, server groups and compute services through a real client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from services.cli.manage import issue_token
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    compute_services_pb2,
    compute_services_pb2_grpc,
    keypairs_pb2,
    keypairs_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
)
from services.compute.virt.images import qemu_img
from tests.integration.test_api_servers import refused
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.auth import Authed
from tests.support.keys import ed25519_public_key
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(90)


def stubs(stack: Stack, stub_type: type, *, admin: bool = False) -> Authed:
    return Authed(stub_type(stack.channel), stack.admin_token if admin else stack.token)


async def test_flavors(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        admin = stubs(stack, catalog_pb2_grpc.FlavorsStub, admin=True)
        member = stubs(stack, catalog_pb2_grpc.FlavorsStub)
        request = catalog_pb2.CreateFlavorRequest(name="c1.huge", vcpus=2, ram=256, disk=1)
        denied = await refused(member.CreateFlavor(request, timeout=5))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        flavor = await admin.CreateFlavor(request, timeout=5)
        assert (flavor.name, flavor.vcpus, flavor.ram, flavor.disk) == ("c1.huge", 2, 256, 1)
        duplicate = await refused(admin.CreateFlavor(request, timeout=5))
        assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS and "name" in duplicate.details()
        for bad, field in [({"vcpus": 0}, "vcpus"), ({"ram": -1}, "ram"), ({"name": ""}, "name"),
                           ({"id": "bad id!"}, "id")]:  # fmt: skip
            fields = {"name": "x1", "vcpus": 1, "ram": 64, "disk": 0, **bad}
            error = await refused(
                admin.CreateFlavor(catalog_pb2.CreateFlavorRequest(**fields), timeout=5)  # type: ignore[arg-type]
            )
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details()
        listed = await member.ListFlavors(catalog_pb2.ListFlavorsRequest(), timeout=5)
        assert {"m1.tiny", "c1.huge"} <= {f.name for f in listed.flavors}
        shown = await member.GetFlavor(catalog_pb2.GetFlavorRequest(id="c1.huge"), timeout=5)
        assert shown.id == flavor.id
        server = await stack.servers.CreateServer(create(flavor_ref="c1.huge"), timeout=5)
        (built,) = await stack.wait_settled(list(server.server_ids))
        assert built.status == servers_pb2.SERVER_STATUS_ACTIVE and built.flavor_name == "c1.huge"
        denied = await refused(member.DeleteFlavor(
            catalog_pb2.DeleteFlavorRequest(id=flavor.id), timeout=5))  # fmt: skip
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        await admin.DeleteFlavor(catalog_pb2.DeleteFlavorRequest(id=flavor.id), timeout=5)
        gone = await refused(
            member.GetFlavor(catalog_pb2.GetFlavorRequest(id=flavor.id), timeout=5)
        )
        assert gone.code() == grpc.StatusCode.NOT_FOUND
        kept = await stack.servers.GetServer(servers_pb2.GetServerRequest(id=built.id), timeout=5)
        assert kept.flavor_name == "c1.huge"  # the server keeps its copy of the flavor


async def test_images(sqlite_url: str, tmp_path: Path) -> None:
    store = tmp_path / "images"
    store.mkdir()
    await asyncio.to_thread(
        qemu_img, "create", "-q", "-f", "qcow2", str(store / "disk.qcow2"), "64M"
    )
    (tmp_path / "secret.txt").write_text("not an image")
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        images = stubs(stack, catalog_pb2_grpc.ImagesStub)
        image = await images.RegisterImage(
            catalog_pb2.RegisterImageRequest(
                name="my-disk", file="disk.qcow2", disk_format="qcow2",
                properties={"hw_architecture": "i686"},
            ),
            timeout=10,
        )  # fmt: skip
        assert image.status == "active" and len(image.checksum) == 64 and image.owner == "demo"
        assert image.state == catalog_pb2.IMAGE_STATE_ACTIVE
        assert image.size > 0 and dict(image.properties) == {"hw_architecture": "i686"}
        for bad, code, field in [
            ({"file": "../secret.txt"}, grpc.StatusCode.INVALID_ARGUMENT, "file"),
            ({"file": "/etc/passwd"}, grpc.StatusCode.INVALID_ARGUMENT, "file"),
            ({"file": "missing.qcow2"}, grpc.StatusCode.NOT_FOUND, "file"),
            ({"disk_format": "vmdk"}, grpc.StatusCode.INVALID_ARGUMENT, "disk_format"),
            ({"initrd_file": "disk.qcow2"}, grpc.StatusCode.INVALID_ARGUMENT, "initrd_file"),
        ]:
            fields = {"name": "x", "file": "disk.qcow2", "disk_format": "qcow2", **bad}
            error = await refused(images.RegisterImage(
                catalog_pb2.RegisterImageRequest(**fields), timeout=5))  # type: ignore[arg-type]  # fmt: skip
            assert error.code() == code and field in error.details(), error.details()
        listed = await images.ListImages(catalog_pb2.ListImagesRequest(), timeout=5)
        assert {"nova-tiny", "my-disk"} <= {i.name for i in listed.images}
        reply = await stack.servers.CreateServer(create(image_ref="my-disk"), timeout=5)
        (server,) = await stack.wait_settled(list(reply.server_ids))
        assert server.status == servers_pb2.SERVER_STATUS_ACTIVE and server.image_id == image.id
        _, other = issue_token(sqlite_url, "other")
        theirs = Authed(catalog_pb2_grpc.ImagesStub(stack.channel), other)
        denied = await refused(theirs.DeleteImage(
            catalog_pb2.DeleteImageRequest(id=image.id), timeout=5))  # fmt: skip
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        await images.DeleteImage(catalog_pb2.DeleteImageRequest(id=image.id), timeout=5)
        gone = await refused(images.GetImage(catalog_pb2.GetImageRequest(id=image.id), timeout=5))
        assert gone.code() == grpc.StatusCode.NOT_FOUND
        refused_create = await refused(
            stack.servers.CreateServer(create(image_ref="my-disk"), timeout=5)
        )
        assert refused_create.code() == grpc.StatusCode.NOT_FOUND


async def test_keypairs(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        mine = stubs(stack, keypairs_pb2_grpc.KeypairsStub)
        key = ed25519_public_key()
        imported = await mine.ImportKeypair(
            keypairs_pb2.ImportKeypairRequest(name="laptop", public_key=key), timeout=5
        )
        assert imported.fingerprint.startswith("SHA256:") and imported.type == "ssh-ed25519"
        for bad, field in [({"public_key": "ssh-rsa notbase64!"}, "public_key"),
                           ({"public_key": "ssh-dss AAAA"}, "public_key"),
                           ({"name": "bad/name"}, "name")]:  # fmt: skip
            fields = {"name": "k2", "public_key": key, **bad}
            error = await refused(mine.ImportKeypair(
                keypairs_pb2.ImportKeypairRequest(**fields), timeout=5))  # fmt: skip
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details()
        same = keypairs_pb2.ImportKeypairRequest(name="laptop", public_key=key)
        duplicate = await refused(mine.ImportKeypair(same, timeout=5))
        assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS
        listed = await mine.ListKeypairs(keypairs_pb2.ListKeypairsRequest(), timeout=5)
        assert [k.name for k in listed.keypairs] == ["laptop"]
        _, other = issue_token(sqlite_url, "other")
        theirs = Authed(keypairs_pb2_grpc.KeypairsStub(stack.channel), other)
        hidden = await refused(theirs.GetKeypair(
            keypairs_pb2.GetKeypairRequest(name="laptop"), timeout=5))  # fmt: skip
        assert hidden.code() == grpc.StatusCode.NOT_FOUND
        await mine.DeleteKeypair(keypairs_pb2.DeleteKeypairRequest(name="laptop"), timeout=5)
        again = await refused(mine.DeleteKeypair(
            keypairs_pb2.DeleteKeypairRequest(name="laptop"), timeout=5))  # fmt: skip
        assert again.code() == grpc.StatusCode.NOT_FOUND


async def test_server_groups(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        groups = stubs(stack, server_groups_pb2_grpc.ServerGroupsStub)
        spread = server_groups_pb2.CreateServerGroupRequest(name="g", policy="spread")
        bad = await refused(groups.CreateServerGroup(spread, timeout=5))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "policy" in bad.details()
        group = await groups.CreateServerGroup(
            server_groups_pb2.CreateServerGroupRequest(name="g", policy="soft-anti-affinity"),
            timeout=5,
        )
        # An old client's string and a new client's enum name the same policy; both fields
        # are filled in the reply.
        soft_anti = server_groups_pb2.SERVER_GROUP_POLICY_SOFT_ANTI_AFFINITY
        assert (group.policy, group.group_policy) == ("soft-anti-affinity", soft_anti)
        by_enum = await groups.CreateServerGroup(
            server_groups_pb2.CreateServerGroupRequest(
                name="h", group_policy=server_groups_pb2.SERVER_GROUP_POLICY_AFFINITY
            ),
            timeout=5,
        )
        assert (by_enum.policy, by_enum.group_policy) == (
            "affinity", server_groups_pb2.SERVER_GROUP_POLICY_AFFINITY)  # fmt: skip
        for request, field in [
            (server_groups_pb2.CreateServerGroupRequest(name="x"), "group_policy"),
            (server_groups_pb2.CreateServerGroupRequest(
                name="x", policy="affinity", group_policy=soft_anti), "policy"),
            (server_groups_pb2.CreateServerGroupRequest(name="x", group_policy=99), "group_policy"),  # type: ignore[arg-type]
        ]:  # fmt: skip
            error = await refused(groups.CreateServerGroup(request, timeout=5))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details()
        await groups.DeleteServerGroup(
            server_groups_pb2.DeleteServerGroupRequest(id=by_enum.id), timeout=5
        )
        listed = await groups.ListServerGroups(
            server_groups_pb2.ListServerGroupsRequest(), timeout=5
        )
        assert [g.id for g in listed.server_groups] == [group.id]
        assert listed.server_groups[0].group_policy == soft_anti
        _, other = issue_token(sqlite_url, "other")
        theirs = Authed(server_groups_pb2_grpc.ServerGroupsStub(stack.channel), other)
        hidden = await refused(theirs.GetServerGroup(
            server_groups_pb2.GetServerGroupRequest(id=group.id), timeout=5))  # fmt: skip
        assert hidden.code() == grpc.StatusCode.NOT_FOUND
        await groups.DeleteServerGroup(
            server_groups_pb2.DeleteServerGroupRequest(id=group.id), timeout=5
        )


async def test_compute_services_for_admins(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        admin = stubs(stack, compute_services_pb2_grpc.ComputeServicesStub, admin=True)
        member = stubs(stack, compute_services_pb2_grpc.ComputeServicesStub)
        denied = await refused(member.ListComputeServices(
            compute_services_pb2.ListComputeServicesRequest(), timeout=5))  # fmt: skip
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        (host,) = (await admin.ListComputeServices(
            compute_services_pb2.ListComputeServicesRequest(), timeout=5)).services  # fmt: skip
        assert (host.state, host.status, host.vcpus, host.memory_mb) == ("up", "enabled", 16, 3072)
        assert (host.service_state, host.service_status) == (
            compute_services_pb2.COMPUTE_SERVICE_STATE_UP,
            compute_services_pb2.COMPUTE_SERVICE_STATUS_ENABLED,
        )
        no_reason = await refused(admin.SetComputeServiceStatus(
            compute_services_pb2.SetComputeServiceStatusRequest(host=host.host, enabled=False),
            timeout=5))  # fmt: skip
        assert no_reason.code() == grpc.StatusCode.INVALID_ARGUMENT
        disabled = await admin.SetComputeServiceStatus(
            compute_services_pb2.SetComputeServiceStatusRequest(
                host=host.host, enabled=False, disabled_reason="maintenance"),
            timeout=5,
        )  # fmt: skip
        assert (disabled.status, disabled.disabled_reason) == ("disabled", "maintenance")
        assert disabled.service_status == compute_services_pb2.COMPUTE_SERVICE_STATUS_DISABLED
        reply = await stack.servers.CreateServer(create(), timeout=5)
        (refused_server,) = await stack.wait_settled(list(reply.server_ids))
        # a disabled host takes no builds
        assert refused_server.status == servers_pb2.SERVER_STATUS_ERROR
        await admin.SetComputeServiceStatus(
            compute_services_pb2.SetComputeServiceStatusRequest(host=host.host, enabled=True),
            timeout=5,
        )
        reply = await stack.servers.CreateServer(create(), timeout=5)
        (built,) = await stack.wait_settled(list(reply.server_ids))
        assert built.status == servers_pb2.SERVER_STATUS_ACTIVE
        (after,) = (await admin.ListComputeServices(
            compute_services_pb2.ListComputeServicesRequest(), timeout=5)).services  # fmt: skip
        assert (after.running_vms, after.memory_mb_used, after.vcpus_used) == (1, 512, 1)
        unknown = await refused(admin.SetComputeServiceStatus(
            compute_services_pb2.SetComputeServiceStatusRequest(host="nope", enabled=True),
            timeout=5))  # fmt: skip
        assert unknown.code() == grpc.StatusCode.NOT_FOUND
