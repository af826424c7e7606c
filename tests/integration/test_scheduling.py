"""Placement through the real services: reschedule to alternates, server groups, forced
hosts, availability zones and min_count, on libvirt's test hypervisor."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
import pytest

from services.common.generated.novagrpc.v1 import (
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
)
from services.compute.virt.libvirt.host import LibvirtHost
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.auth import Authed
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(90)


class Squatter:
    """A real domain holding the one libvirt name a 'broken' compute gives every instance, so
    that libvirt itself refuses each of that host's builds."""

    def __init__(self, tmp_path: Path) -> None:
        self.name = f"squat-{tmp_path.name}"
        self.template = self.name + "%(uuid).0s"  # always renders to the squatted name
        self._host = LibvirtHost("test:///default")
        self._host.connect()
        self._domain = self._host.connection.defineXML(
            f"<domain type='test'><name>{self.name}</name><memory>65536</memory>"
            "<os><type>hvm</type></os></domain>"
        )

    def close(self) -> None:
        self._domain.undefine()
        self._host.close()


def hostname(stack: Stack, index: int) -> str:
    return stack.computes[index].name.split()[-1]


async def group(stack: Stack, policy: str) -> str:
    stub = Authed(server_groups_pb2_grpc.ServerGroupsStub(stack.channel), stack.token)
    created = await stub.CreateServerGroup(
        server_groups_pb2.CreateServerGroupRequest(name=policy, policy=policy), timeout=5
    )
    return str(created.id)


async def test_a_failed_build_moves_to_an_alternate_and_the_action_shows_the_retry(
    sqlite_url: str, tmp_path: Path
) -> None:
    squat = Squatter(tmp_path)
    try:
        async with running_stack(
            sqlite_url,
            tmp_path,
            computes=2,
            per_compute=[{"instance_name_template": squat.template}],
        ) as stack:
            await wait_for_compute(sqlite_url, 2)
            broken, healthy = hostname(stack, 0), hostname(stack, 1)
            reply = await stack.servers.CreateServer(create(max_count=4), timeout=5)
            servers = await stack.wait_settled(list(reply.server_ids))
            assert [s.status for s in servers] == [servers_pb2.SERVER_STATUS_ACTIVE] * 4
            assert {s.host for s in servers} == {healthy}
            retried = []
            for server in servers:
                listed = await stack.admin.ListServerActions(
                    servers_pb2.ListServerActionsRequest(server_id=server.id), timeout=5
                )
                (action,) = listed.actions
                builds = [e for e in action.events if e.event == "compute_build_and_run"]
                if len(builds) == 2:
                    retried.append(server.id)
                    assert (builds[0].host, builds[0].result) == (broken, "Error")
                    assert "defineXML failed" in builds[0].details
                    assert (builds[1].host, builds[1].result) == (healthy, "Success")
                assert action.finish_time.seconds > 0
            assert retried, "the spread over two hosts should have tried the broken one"
            # users see the steps, not the hosts (as Nova)
            mine = await stack.servers.ListServerActions(
                servers_pb2.ListServerActionsRequest(server_id=retried[0]), timeout=5
            )
            assert all(e.host == "" for e in mine.actions[0].events)
    finally:
        squat.close()


async def test_when_every_host_fails_the_build_ends_in_error_after_max_attempts(
    sqlite_url: str, tmp_path: Path
) -> None:
    squat = Squatter(tmp_path)
    everyone = [{"instance_name_template": squat.template}] * 3
    try:
        async with running_stack(sqlite_url, tmp_path, computes=3, per_compute=everyone) as stack:
            await wait_for_compute(sqlite_url, 3)
            server_id = (await stack.servers.CreateServer(create(), timeout=5)).server_ids[0]
            server = await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_ERROR)
            assert "Exceeded maximum number of retries (3 attempts)" in server.fault.message
            admin_view = await stack.admin.GetServer(
                servers_pb2.GetServerRequest(id=server_id), timeout=5
            )
            tried = admin_view.fault.details.removeprefix("tried hosts: ").split(", ")
            assert sorted(tried) == sorted(hostname(stack, i) for i in range(3))
            user_view = await stack.servers.GetServer(
                servers_pb2.GetServerRequest(id=server_id), timeout=5
            )
            assert user_view.fault.message == server.fault.message
            assert user_view.fault.details == ""  # details are for admins
    finally:
        squat.close()


async def test_anti_affinity_and_affinity_groups(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path, computes=2) as stack:
        await wait_for_compute(sqlite_url, 2)
        apart = await group(stack, "anti-affinity")
        reply = await stack.servers.CreateServer(
            create("apart", max_count=3, scheduler_hints=servers_pb2.SchedulerHints(group=apart)),
            timeout=5,
        )
        servers = await stack.wait_settled(list(reply.server_ids))
        active = [s for s in servers if s.status == servers_pb2.SERVER_STATUS_ACTIVE]
        assert len({s.host for s in active}) == 2 and len(active) == 2
        (refused,) = [s for s in servers if s.status == servers_pb2.SERVER_STATUS_ERROR]
        assert refused.fault.message.startswith("No valid host was found")
        admin_view = await stack.admin.GetServer(
            servers_pb2.GetServerRequest(id=refused.id), timeout=5
        )
        assert "ServerGroupAntiAffinityFilter removed 2" in admin_view.fault.details

        together = await group(stack, "affinity")
        reply = await stack.servers.CreateServer(
            create("together", max_count=3,
                   scheduler_hints=servers_pb2.SchedulerHints(group=together)),
            timeout=5,
        )  # fmt: skip
        servers = await stack.wait_settled(list(reply.server_ids))
        assert {s.status for s in servers} == {servers_pb2.SERVER_STATUS_ACTIVE}
        assert len({s.host for s in servers}) == 1
        stub = Authed(server_groups_pb2_grpc.ServerGroupsStub(stack.channel), stack.token)
        shown = await stub.GetServerGroup(
            server_groups_pb2.GetServerGroupRequest(id=together), timeout=5
        )
        assert sorted(shown.members) == sorted(reply.server_ids)


async def test_same_host_and_different_host_hints(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path, computes=2) as stack:
        await wait_for_compute(sqlite_url, 2)
        anchor = (await stack.servers.CreateServer(create("anchor"), timeout=5)).server_ids[0]
        (placed,) = await stack.wait_settled([anchor])
        near = await stack.servers.CreateServer(
            create("near", max_count=2,
                   scheduler_hints=servers_pb2.SchedulerHints(same_host=[anchor])),
            timeout=5,
        )  # fmt: skip
        far = await stack.servers.CreateServer(
            create("far", max_count=2,
                   scheduler_hints=servers_pb2.SchedulerHints(different_host=[anchor])),
            timeout=5,
        )  # fmt: skip
        near_servers = await stack.wait_settled(list(near.server_ids))
        far_servers = await stack.wait_settled(list(far.server_ids))
        assert {s.host for s in near_servers} == {placed.host}
        assert placed.host not in {s.host for s in far_servers}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.servers.CreateServer(
                create(scheduler_hints=servers_pb2.SchedulerHints(
                    same_host=["6b7c1a2e-0000-4000-8000-000000000000"])),
                timeout=5,
            )  # fmt: skip
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "scheduler_hints.same_host" in (caught.value.details() or "")


async def test_forced_host_is_admin_only_and_skips_filters(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path, computes=2) as stack:
        await wait_for_compute(sqlite_url, 2)
        target = hostname(stack, 1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.servers.CreateServer(create(availability_zone=f"nova:{target}"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "availability_zone" in (caught.value.details() or "")
        reply = await stack.admin.CreateServer(
            create(max_count=3, availability_zone=f"nova:{target}"), timeout=5
        )
        servers = await stack.wait_settled(list(reply.server_ids))
        assert {s.host for s in servers} == {target}
        assert {s.status for s in servers} == {servers_pb2.SERVER_STATUS_ACTIVE}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.admin.CreateServer(create(availability_zone="nova:no-such-host"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_availability_zones(sqlite_url: str, tmp_path: Path) -> None:
    zones = [{"availability_zone": "az1"}, {"availability_zone": "az2"}]
    async with running_stack(sqlite_url, tmp_path, computes=2, per_compute=zones) as stack:
        await wait_for_compute(sqlite_url, 2)
        reply = await stack.servers.CreateServer(
            create(max_count=4, availability_zone="az2"), timeout=5
        )
        servers = await stack.wait_settled(list(reply.server_ids))
        assert {s.host for s in servers} == {hostname(stack, 1)}
        assert {s.availability_zone for s in servers} == {"az2"}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.servers.CreateServer(create(availability_zone="az9"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "availability_zone" in (caught.value.details() or "")


async def test_min_count_is_all_or_nothing(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        # the test node takes nine m1.tiny
        too_many = await stack.servers.CreateServer(
            create("big", min_count=10, max_count=12), timeout=5
        )
        servers = await stack.wait_settled(list(too_many.server_ids))
        assert {s.status for s in servers} == {servers_pb2.SERVER_STATUS_ERROR}
        assert "min_count" in servers[0].fault.message
        enough = await stack.servers.CreateServer(
            create("ok", min_count=2, max_count=12), timeout=5
        )
        servers = await stack.wait_settled(list(enough.server_ids))
        assert Counter(s.status for s in servers) == {
            servers_pb2.SERVER_STATUS_ACTIVE: 9,
            servers_pb2.SERVER_STATUS_ERROR: 3,
        }
