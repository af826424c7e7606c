"""The server RPCs of the public API through a real client: CreateServer's fields, bad input,
quotas, idempotency, listing, watching and power actions."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from services.cli.manage import issue_token
from services.common.db.engine import Database
from services.common.generated.novagrpc.v1 import (
    keypairs_pb2,
    keypairs_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
    security_groups_pb2,
    security_groups_pb2_grpc,
    servers_pb2,
)
from tests.integration.test_compute_lifecycle import GatedDriver
from tests.integration.test_pipeline import create, instance_count, wait_for_compute
from tests.support.auth import Authed
from tests.support.keys import ed25519_public_key
from tests.support.polling import wait_until_async
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(90)


async def refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def rich_detail(error: grpc.aio.AioRpcError, kind: type) -> object:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            detail = kind()
            assert status_pb2.Status.FromString(value).details[0].Unpack(detail)
            return detail
    raise AssertionError("no rich status")


async def import_key(stack: Stack, name: str = "mykey") -> None:
    stub = Authed(keypairs_pb2_grpc.KeypairsStub(stack.channel), stack.token)
    await stub.ImportKeypair(
        keypairs_pb2.ImportKeypairRequest(name=name, public_key=ed25519_public_key()), timeout=5
    )


async def test_create_records_every_field_and_returns_the_password_once(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        await import_key(stack)
        nets = Authed(networks_pb2_grpc.NetworksStub(stack.channel), stack.token)
        for name, cidr in (("net-a", "10.1.0.0/24"), ("net-b", "10.2.0.0/24")):
            await nets.CreateNetwork(networks_pb2.CreateNetworkRequest(name=name, cidr=cidr))
        groups = Authed(security_groups_pb2_grpc.SecurityGroupsStub(stack.channel), stack.token)
        await groups.CreateSecurityGroup(security_groups_pb2.CreateSecurityGroupRequest(name="web"))
        user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
        reply = await stack.servers.CreateServer(
            create(
                "full", description="a web server", key_name="mykey", user_data=user_data,
                networks=["net-a", "net-b"], security_groups=["web"], tags=["prod", "web"],
                block_device_mapping=[servers_pb2.BlockDeviceMapping(
                    source_type="blank", destination_type="local", volume_size=2)],
                return_reservation_id=True,
            ),
            timeout=5,
        )  # fmt: skip
        assert len(reply.admin_password) >= 12 and reply.reservation_id
        (server,) = await stack.wait_settled(list(reply.server_ids))
        assert server.status == servers_pb2.SERVER_STATUS_ACTIVE
        assert (server.description, server.key_name) == ("a web server", "mykey")
        assert list(server.networks) == ["net-a", "net-b"]
        assert [(a.network, a.addr, a.type) for a in server.addresses] == [
            ("net-a", "10.1.0.2", "fixed"),
            ("net-b", "10.2.0.2", "fixed"),
        ]
        assert all(a.mac_addr.startswith("fa:16:3e:") for a in server.addresses)
        assert list(server.security_groups) == ["web"]
        assert sorted(server.tags) == ["prod", "web"] and server.config_drive
        # the password went to the build, never to the database
        db = Database(sqlite_url)
        try:
            with db.begin_read() as connection:
                dump = "\n".join(connection.connection.dbapi_connection.iterdump())  # type: ignore[union-attr]
        finally:
            db.close()
        assert reply.admin_password not in dump and "a web server" in dump


BAD_CREATES = [
    ({"user_data": "not base64!"}, grpc.StatusCode.INVALID_ARGUMENT, "user_data"),
    ({"user_data": base64.b64encode(b"x" * (64 * 1024 + 1)).decode()},
     grpc.StatusCode.INVALID_ARGUMENT, "user_data"),
    ({"tags": ["a/b"]}, grpc.StatusCode.INVALID_ARGUMENT, "tags"),
    ({"tags": [f"t{i}" for i in range(51)]}, grpc.StatusCode.INVALID_ARGUMENT, "tags"),
    ({"networks": ["none", "net"]}, grpc.StatusCode.INVALID_ARGUMENT, "networks"),
    ({"key_name": "nokey"}, grpc.StatusCode.NOT_FOUND, "key_name"),
    ({"key_name": "bad/name"}, grpc.StatusCode.INVALID_ARGUMENT, "key_name"),
    ({"metadata": {str(i): "v" for i in range(129)}}, grpc.StatusCode.INVALID_ARGUMENT,
     "metadata"),
    ({"metadata": {"k": "v" * 256}}, grpc.StatusCode.INVALID_ARGUMENT, "metadata"),
    ({"description": "x" * 256}, grpc.StatusCode.INVALID_ARGUMENT, "description"),
    ({"security_groups": [""]}, grpc.StatusCode.INVALID_ARGUMENT, "security_groups"),
    ({"block_device_mapping": [servers_pb2.BlockDeviceMapping(
        source_type="image", destination_type="local", volume_size=1)]},
     grpc.StatusCode.INVALID_ARGUMENT, "block_device_mapping"),
    ({"block_device_mapping": [servers_pb2.BlockDeviceMapping(
        source_type="blank", destination_type="local", volume_size=0)]},
     grpc.StatusCode.INVALID_ARGUMENT, "block_device_mapping.volume_size"),
    ({"scheduler_hints": servers_pb2.SchedulerHints(group="no-such-group")},
     grpc.StatusCode.NOT_FOUND, "scheduler_hints.group"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "code", "field"), BAD_CREATES)
async def test_bad_create_fields_are_refused_naming_the_field(
    sqlite_url: str, tmp_path: Path, fields: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        error = await refused(stack.servers.CreateServer(create(**fields), timeout=5))
        assert error.code() == code, error.details()
        assert field in (error.details() or "")
        assert await instance_count(sqlite_url) == 0


async def test_the_same_client_request_id_returns_the_same_servers(
    database_url: str, tmp_path: Path
) -> None:
    sqlite_url = database_url  # runs on SQLite and on PostgreSQL
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        request = create("idem", max_count=2, client_request_id="retry-me-1")
        first = await stack.servers.CreateServer(request, timeout=5)
        again = await asyncio.gather(
            *(stack.servers.CreateServer(request, timeout=5) for _ in range(5))
        )
        assert all(list(r.server_ids) == list(first.server_ids) for r in again)
        assert all(r.reservation_id == first.reservation_id for r in again)
        assert all(r.admin_password == "" for r in again)  # the password is shown once only
        _, other_token = issue_token(sqlite_url, "other")
        theirs = await stack.servers_as(other_token).CreateServer(request, timeout=5)
        assert set(theirs.server_ids).isdisjoint(first.server_ids)  # keys are per project
        assert await instance_count(sqlite_url) == 4
        servers = await stack.wait_settled([*first.server_ids, *theirs.server_ids])
        assert {s.status for s in servers} == {servers_pb2.SERVER_STATUS_ACTIVE}  # stored and built


async def test_quota_boundary(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path, api={"quota_instances": 10}) as stack:
        await wait_for_compute(sqlite_url)
        quotas = Authed(quotas_pb2_grpc.QuotasStub(stack.channel), stack.admin_token)
        member_quotas = Authed(quotas_pb2_grpc.QuotasStub(stack.channel), stack.token)
        denied = await refused(member_quotas.SetQuota(
            quotas_pb2.SetQuotaRequest(project_id="demo", instances=99), timeout=5))  # fmt: skip
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        await quotas.SetQuota(quotas_pb2.SetQuotaRequest(project_id="demo", instances=3), timeout=5)
        first = await stack.servers.CreateServer(create("q", max_count=2), timeout=5)
        assert len(first.server_ids) == 2
        # one left: max_count is lowered to what fits, as Nova
        second = await stack.servers.CreateServer(create("q", max_count=5), timeout=5)
        assert len(second.server_ids) == 1
        over = await refused(stack.servers.CreateServer(create("q"), timeout=5))
        assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "instances" in (over.details() or "") and "limit 3" in (over.details() or "")
        failure = rich_detail(over, error_details_pb2.QuotaFailure)
        assert failure.violations[0].subject == "instances"  # type: ignore[attr-defined]
        usage = await member_quotas.GetQuota(quotas_pb2.GetQuotaRequest(), timeout=5)
        assert (usage.instances.limit, usage.instances.in_use) == (3, 3)
        assert usage.cores.in_use == 3 and usage.ram.in_use == 3 * 512
        # deleting frees quota
        await stack.servers.DeleteServer(
            servers_pb2.DeleteServerRequest(id=second.server_ids[0]), timeout=5
        )
        await stack.wait_status(second.server_ids[0], servers_pb2.SERVER_STATUS_DELETED)
        await stack.servers.CreateServer(create("q"), timeout=5)


async def test_list_filters_and_pagination_return_every_server_once(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path, computes=2) as stack:
        await wait_for_compute(sqlite_url, 2)
        created: list[str] = []
        for i in range(6):
            reply = await stack.servers.CreateServer(
                create(f"web-{i}" if i % 2 else f"db-{i}", max_count=3,
                       tags=["even"] if i % 2 == 0 else ["odd"]),
                timeout=5,
            )  # fmt: skip
            created.extend(reply.server_ids)
        await stack.wait_settled(created)
        seen: list[str] = []
        request = servers_pb2.ListServersRequest(limit=4)
        pages = 0
        while True:
            page = await stack.servers.ListServers(request, timeout=5)
            pages += 1
            seen.extend(s.id for s in page.servers)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        assert sorted(seen) == sorted(created) and len(seen) == len(set(seen)) and pages == 5

        async def ids(**fields: object) -> set[str]:
            page = await stack.servers.ListServers(
                servers_pb2.ListServersRequest(**fields),
                timeout=5,  # type: ignore[arg-type]
            )
            return {s.id for s in page.servers}

        assert len(await ids(name="^web-")) == 9 and len(await ids(name="^db-[02]")) == 6
        assert len(await ids(tags=["even"])) == 9
        assert len(await ids(status=servers_pb2.SERVER_STATUS_ACTIVE)) == 18
        assert await ids(status=servers_pb2.SERVER_STATUS_ERROR) == set()
        assert len(await ids(flavor="m1.tiny")) == 18 and await ids(flavor="m1.large") == set()
        future = timestamp_pb2.Timestamp(seconds=4_000_000_000)
        assert await ids(changes_since=future) == set()
        denied = await refused(stack.servers.ListServers(
            servers_pb2.ListServersRequest(host="anything"), timeout=5))  # fmt: skip
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        host = stack.computes[0].name.split()[-1]
        by_host = await stack.admin.ListServers(
            servers_pb2.ListServersRequest(host=host), timeout=5
        )
        assert by_host.servers and {s.host for s in by_host.servers} == {host}
        # A token is bound to the filters that produced it (AIP-158).
        tagged = await stack.servers.ListServers(
            servers_pb2.ListServersRequest(tags=["even"], page_size=2), timeout=5
        )
        assert len(tagged.servers) == 2 and tagged.next_page_token
        continued = await stack.servers.ListServers(servers_pb2.ListServersRequest(
            tags=["even"], page_size=2, page_token=tagged.next_page_token), timeout=5)  # fmt: skip
        assert len(continued.servers) == 2
        # Above the maximum is lowered to it, as AIP-158 (not refused).
        assert len(await ids(page_size=5000)) == 18 and len(await ids(limit=5000)) == 18
        for bad, field in [({"name": "("}, "name"), ({"page_token": "garbage"}, "page_token"),
                           ({"limit": -1}, "limit"), ({"page_size": -1}, "page_size"),
                           ({"tags": ["odd"], "page_token": tagged.next_page_token}, "page_token"),
                           ({"page_token": tagged.next_page_token}, "page_token")]:  # fmt: skip
            error = await refused(stack.servers.ListServers(
                servers_pb2.ListServersRequest(**bad), timeout=5))  # type: ignore[arg-type]  # fmt: skip
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details()


async def test_watch_delivers_build_then_active_in_order(sqlite_url: str, tmp_path: Path) -> None:
    gated: list[GatedDriver] = []

    def wrap(real: object) -> object:
        gated.append(GatedDriver(real))  # type: ignore[arg-type]
        return gated[0]

    async with running_stack(sqlite_url, tmp_path, wrap_driver=wrap) as stack:  # type: ignore[arg-type]
        stack.on_exit(gated[0].gate.set)
        await wait_for_compute(sqlite_url)
        reply = await stack.servers.CreateServer(create("watched", max_count=2), timeout=5)
        stream = stack.servers.WatchServers(
            servers_pb2.WatchServersRequest(reservation_id=reply.reservation_id), timeout=30
        )
        events: list[tuple[str, str, int]] = []
        released = False
        async for event in stream:
            events.append((event.server.id, event.change, event.server.status))
            # the enum says what the deprecated string says
            kind = servers_pb2.ServerChangeKind.Name(event.kind)
            assert kind == f"SERVER_CHANGE_KIND_{event.change.upper()}"
            if not released:
                gated[0].gate.set()  # every server is BUILD until now
                released = True
            latest = {sid: status for sid, _, status in events}
            if len(latest) == 2 and set(latest.values()) == {servers_pb2.SERVER_STATUS_ACTIVE}:
                break
        stream.cancel()
        for server_id in reply.server_ids:
            statuses = [status for sid, _, status in events if sid == server_id]
            assert statuses[0] == servers_pb2.SERVER_STATUS_BUILD
            assert statuses[-1] == servers_pb2.SERVER_STATUS_ACTIVE
            assert servers_pb2.SERVER_STATUS_ACTIVE not in statuses[:-1]  # never back to BUILD
        assert events[0][1] == "snapshot"
        unknown = servers_pb2.WatchServersRequest(server_id="7d3f0c8e-0000-4000-8000-000000000000")
        error = await refused(_first(stack.servers.WatchServers(unknown, timeout=5)))
        assert error.code() == grpc.StatusCode.NOT_FOUND


async def _first(stream: object) -> object:
    async for event in stream:  # type: ignore[attr-defined]
        return event
    return None


async def test_stop_start_and_reboot(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        server_id = (await stack.servers.CreateServer(create("power"), timeout=5)).server_ids[0]
        await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_ACTIVE)
        wrong = await refused(
            stack.servers.StartServer(servers_pb2.StartServerRequest(id=server_id), timeout=5)
        )
        assert wrong.code() == grpc.StatusCode.FAILED_PRECONDITION and "active" in wrong.details()

        await stack.servers.StopServer(servers_pb2.StopServerRequest(id=server_id), timeout=5)
        stopped = await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_SHUTOFF)
        assert stopped.power_state == servers_pb2.POWER_STATE_SHUTDOWN and stopped.task_state == ""
        await stack.servers.StartServer(servers_pb2.StartServerRequest(id=server_id), timeout=5)
        started = await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_ACTIVE)
        assert started.power_state == servers_pb2.POWER_STATE_RUNNING
        reboot = servers_pb2.RebootServerRequest
        unknown = await refused(stack.servers.RebootServer(reboot(id=server_id, type=9), timeout=5))  # type: ignore[arg-type]
        assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert unknown.details().startswith("type:")
        # UNSPECIFIED is what clients built before REBOOT_TYPE_SOFT sent for SOFT (0)
        kinds = (reboot.REBOOT_TYPE_SOFT, reboot.REBOOT_TYPE_HARD, reboot.REBOOT_TYPE_UNSPECIFIED)
        for kind in kinds:
            await stack.servers.RebootServer(
                servers_pb2.RebootServerRequest(id=server_id, type=kind), timeout=5
            )

            async def rebooted() -> servers_pb2.Server | None:
                shown = await stack.servers.GetServer(
                    servers_pb2.GetServerRequest(id=server_id), timeout=5
                )
                return None if shown.task_state else shown

            server = await wait_until_async(rebooted, 10, "the reboot to finish")
            assert server is not None
            assert server.status == servers_pb2.SERVER_STATUS_ACTIVE
            assert server.power_state == servers_pb2.POWER_STATE_RUNNING
        actions = await stack.servers.ListServerActions(
            servers_pb2.ListServerActionsRequest(server_id=server_id), timeout=5
        )
        assert [a.action for a in actions.actions] == [
            "create",
            "stop",
            "start",
            "reboot",
            "reboot",
            "reboot",
        ]
        assert all(a.finish_time.seconds for a in actions.actions)
        gone = servers_pb2.StopServerRequest(id="7d3f0c8e-0000-4000-8000-000000000000")
        missing = await refused(stack.servers.StopServer(gone, timeout=5))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
