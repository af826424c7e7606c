"""Create servers through real gRPC servers (port 0), a real database and libvirt's test
hypervisor, all in this process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import func, select

from services.common.db.engine import Database
from services.common.db.models import INSTANCES, NODES
from services.common.generated.novagrpc.v1 import servers_pb2
from tests.support.polling import wait_until_async
from tests.support.stack import running_stack


async def wait_for_compute(database_url: str, count: int = 1) -> None:
    db = Database(database_url)

    async def registered() -> bool:
        nodes = await db.read(lambda c: c.execute(select(func.count()).select_from(NODES)).scalar())
        return bool(nodes >= count)

    try:
        await wait_until_async(registered, 10, f"{count} compute node(s) to register")
    finally:
        db.close()


async def instance_count(database_url: str) -> int:
    db = Database(database_url)
    try:
        return int(
            await db.read(lambda c: c.execute(select(func.count()).select_from(INSTANCES)).scalar())
        )
    finally:
        db.close()


def create(name: str = "web", **fields: object) -> servers_pb2.CreateServerRequest:
    values: dict[str, object] = {"name": name, "flavor_ref": "m1.tiny", "image_ref": "nova-tiny"}
    values.update(fields)
    return servers_pb2.CreateServerRequest(**values)  # type: ignore[arg-type]


def field_violation(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            bad = error_details_pb2.BadRequest()
            assert status.details[0].Unpack(bad)
            return str(bad.field_violations[0].field)
    raise AssertionError("no rich status details")


async def test_three_servers_become_active_and_share_a_reservation(
    database_url: str, tmp_path: Path
) -> None:
    async with running_stack(database_url, tmp_path) as stack:
        await wait_for_compute(database_url)
        reply = await stack.servers.CreateServer(create(max_count=3), timeout=5)
        assert len(reply.server_ids) == 3 and reply.reservation_id.startswith("r-")
        servers = await stack.wait_settled(list(reply.server_ids))
        assert [s.status for s in servers] == [servers_pb2.SERVER_STATUS_ACTIVE] * 3
        assert all(s.power_state == servers_pb2.POWER_STATE_RUNNING for s in servers)
        assert all(s.host == stack.computes[0].name.split()[-1] for s in servers)
        assert sorted(s.name for s in servers) == ["web-1", "web-2", "web-3"]
        listed = await stack.servers.ListServers(
            servers_pb2.ListServersRequest(reservation_id=reply.reservation_id), timeout=5
        )
        assert sorted(s.id for s in listed.servers) == sorted(reply.server_ids)


@pytest.mark.parametrize(
    ("request_fields", "code", "field"),
    [
        ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"name": "x" * 256}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"min_count": 0}, grpc.StatusCode.INVALID_ARGUMENT, "min_count"),
        ({"min_count": 3, "max_count": 2}, grpc.StatusCode.INVALID_ARGUMENT, "max_count"),
        ({"flavor_ref": ""}, grpc.StatusCode.INVALID_ARGUMENT, "flavor_ref"),
        ({"flavor_ref": "m1.huge"}, grpc.StatusCode.NOT_FOUND, "flavor_ref"),
        ({"image_ref": "no-such-image"}, grpc.StatusCode.NOT_FOUND, "image_ref"),
    ],
)
async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    sqlite_url: str,
    tmp_path: Path,
    request_fields: dict[str, object],
    code: grpc.StatusCode,
    field: str,
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        values: dict[str, object] = {"name": "web", **request_fields}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.servers.CreateServer(create(**values), timeout=5)
        assert caught.value.code() == code
        assert field in (caught.value.details() or "")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert field_violation(caught.value) == field
        assert await instance_count(sqlite_url) == 0


async def test_a_bad_create_in_a_batch_does_not_spoil_the_good_ones(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        calls = [stack.servers.CreateServer(create(f"ok-{i}"), timeout=5) for i in range(8)] + [
            stack.servers.CreateServer(create("bad", flavor_ref="nope"), timeout=5)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        good = [r for r in results if isinstance(r, servers_pb2.CreateServerResponse)]
        bad = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(good) == 8 and len(bad) == 1
        assert bad[0].code() == grpc.StatusCode.NOT_FOUND
        assert await instance_count(sqlite_url) == 8
        settled = await stack.wait_settled([r.server_ids[0] for r in good])
        assert {s.status for s in settled} == {servers_pb2.SERVER_STATUS_ACTIVE}


async def test_get_unknown_server_is_not_found(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.servers.GetServer(
                servers_pb2.GetServerRequest(id="7d3f0c8e-0000-4000-8000-000000000000"), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_more_than_fits_ends_in_error_with_a_no_valid_host_fault(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        # The test node has 3 GiB; at RAM ratio 1.5 that is nine m1.tiny (512 MiB).
        reply = await stack.servers.CreateServer(create(max_count=12), timeout=5)
        servers = await stack.wait_settled(list(reply.server_ids))
        statuses = sorted(servers_pb2.ServerStatus.Name(s.status) for s in servers)
        assert statuses == ["SERVER_STATUS_ACTIVE"] * 9 + ["SERVER_STATUS_ERROR"] * 3
        errors = [s for s in servers if s.status == servers_pb2.SERVER_STATUS_ERROR]
        assert all(s.fault.message.startswith("No valid host was found") for s in errors)
