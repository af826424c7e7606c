"""An identity per role inside: with real mutual TLS on port 0, one compute's certificate
tries every call that belongs to the api or the conductor, and tries to report on another
host's node and instances. Each is PERMISSION_DENIED and logged; the rightful calls pass."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.generated.novagrpc.internal.v1 import (
    compute_pb2,
    compute_pb2_grpc,
    conductor_pb2,
    conductor_pb2_grpc,
)
from services.common.generated.novagrpc.v1 import servers_pb2
from services.common.pki import role_settings_env
from services.common.tls import InternalTls
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(60)


def channel_as(stack: Stack, address: str, role: str, host: str = "") -> grpc.aio.Channel:
    env = role_settings_env(stack.pki, role, host=host)
    tls = InternalTls.load(
        env["NOVA_GRPC_INTERNAL_TLS_CA"],
        env["NOVA_GRPC_INTERNAL_TLS_CERT"],
        env["NOVA_GRPC_INTERNAL_TLS_KEY"],
    )
    return grpc.aio.secure_channel(
        address, tls.channel_credentials(), options=tls.channel_options()
    )


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def one_build(uuid: str) -> AsyncIterator[conductor_pb2.BuildInstancesRequest]:
    yield conductor_pb2.BuildInstancesRequest(instance_uuids=[uuid])


def event(
    uuid: str, host: str, kind: int = conductor_pb2.INSTANCE_EVENT_KIND_LOST
) -> conductor_pb2.InstanceEvent:
    return conductor_pb2.InstanceEvent(instance_uuid=uuid, host=host, kind=kind, reason="x")


async def test_a_compute_certificate_cannot_make_the_others_calls(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.common.rpc.peers")
    async with running_stack(sqlite_url, tmp_path, computes=2) as stack:
        await wait_for_compute(sqlite_url, 2)
        reply = await stack.servers.CreateServer(create(), timeout=5)
        uuid = reply.server_ids[0]
        victim_host = (await stack.wait_status(uuid, servers_pb2.SERVER_STATUS_ACTIVE)).host
        hosts = [f"{tmp_path.name}-compute{i}" for i in range(2)]
        attacker = next(h for h in hosts if h != victim_host)
        victim = stack.computes[hosts.index(victim_host)].address

        async with (
            channel_as(stack, stack.conductor.address, "compute", attacker) as to_conductor,
            channel_as(stack, victim, "compute", attacker) as to_victim,
        ):
            conductor = conductor_pb2_grpc.ConductorStub(to_conductor)
            compute = compute_pb2_grpc.ComputeStub(to_victim)
            denied: dict[str, Callable[[], Awaitable[Any]]] = {
                # the api's casts
                "BuildInstances": lambda: conductor.BuildInstances(one_build(uuid), timeout=5),
                "DeleteInstances": lambda: conductor.DeleteInstances(
                    conductor_pb2.DeleteInstancesRequest(instance_uuids=[uuid]), timeout=5
                ),
                "conductor PowerAction": lambda: conductor.PowerAction(
                    conductor_pb2.PowerActionRequest(
                        instance_uuid=uuid, action=conductor_pb2.POWER_ACTION_KIND_STOP
                    ),
                    timeout=5,
                ),
                # the conductor's calls to a compute
                "BuildAndRunInstance": lambda: compute.BuildAndRunInstance(
                    compute_pb2.BuildAndRunInstanceRequest(), timeout=5
                ),
                "TerminateInstance": lambda: compute.TerminateInstance(
                    compute_pb2.TerminateInstanceRequest(instance_uuids=[uuid]), timeout=5
                ),
                "compute PowerAction": lambda: compute.PowerAction(
                    compute_pb2.ComputePowerActionRequest(instance_uuid=uuid, action="stop"),
                    timeout=5,
                ),
                # reports for another host, or on another host's instance
                "events for another host": lambda: conductor.ReportInstanceEvents(
                    conductor_pb2.ReportInstanceEventsRequest(events=[event(uuid, victim_host)]),
                    timeout=5,
                ),
                "events on another host's instance": lambda: conductor.ReportInstanceEvents(
                    conductor_pb2.ReportInstanceEventsRequest(events=[event(uuid, attacker)]),
                    timeout=5,
                ),
                "events on an unknown instance": lambda: conductor.ReportInstanceEvents(
                    conductor_pb2.ReportInstanceEventsRequest(
                        events=[event("00000000-0000-0000-0000-000000000000", attacker)]
                    ),
                    timeout=5,
                ),
                "node of another host": lambda: conductor.ReportComputeNode(
                    conductor_pb2.ReportComputeNodeRequest(
                        host=victim_host, rpc_address="127.0.0.1:1", vcpus=1, memory_mb=1
                    ),
                    timeout=5,
                ),
                "another host's instance list": lambda: conductor.ListHostInstances(
                    conductor_pb2.ListHostInstancesRequest(host=victim_host), timeout=5
                ),
            }
            codes = {name: await code_of(call()) for name, call in denied.items()}
            assert codes == dict.fromkeys(denied, grpc.StatusCode.PERMISSION_DENIED)
            # its own business still passes
            own = await conductor.ListHostInstances(
                conductor_pb2.ListHostInstancesRequest(host=attacker), timeout=5
            )
            assert uuid not in {i.instance_uuid for i in own.instances}

        refusals = [r for r in caplog.records if "refused internal call" in r.getMessage()]
        assert len(refusals) == len(denied)
        # nothing the attacker sent took effect
        server = await stack.wait_status(uuid, servers_pb2.SERVER_STATUS_ACTIVE)
        assert server.host == victim_host and server.power_state == servers_pb2.POWER_STATE_RUNNING


async def test_each_role_is_held_to_its_own_calls(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        host = f"{tmp_path.name}-compute0"
        async with (
            channel_as(stack, stack.conductor.address, "api") as api_to_conductor,
            channel_as(stack, stack.conductor.address, "conductor") as conductor_to_itself,
            channel_as(stack, stack.computes[0].address, "api") as api_to_compute,
            channel_as(stack, stack.computes[0].address, "conductor") as conductor_to_compute,
        ):
            as_api = conductor_pb2_grpc.ConductorStub(api_to_conductor)
            report = conductor_pb2.ReportInstanceEventsRequest()
            assert await code_of(as_api.ReportInstanceEvents(report, timeout=5)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
            listing = conductor_pb2.ListHostInstancesRequest(host=host)
            assert await code_of(as_api.ListHostInstances(listing, timeout=5)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
            itself = conductor_pb2_grpc.ConductorStub(conductor_to_itself)
            assert await code_of(itself.BuildInstances(one_build("x"), timeout=5)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
            build = compute_pb2.BuildAndRunInstanceRequest()
            api_compute = compute_pb2_grpc.ComputeStub(api_to_compute)
            assert await code_of(api_compute.BuildAndRunInstance(build, timeout=5)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
            # the rightful callers pass
            status = compute_pb2.GetComputeStatusRequest()
            assert await code_of(api_compute.GetComputeStatus(status, timeout=5)) == (
                grpc.StatusCode.OK
            )
            rightful = compute_pb2_grpc.ComputeStub(conductor_to_compute)
            assert await code_of(rightful.BuildAndRunInstance(build, timeout=5)) == (
                grpc.StatusCode.OK
            )
