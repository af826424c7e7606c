"""Builds per second through one compute service alone (issue: compute), and one real guest.

The compute service runs as its own process on a simulated test:///node.xml host; this
harness plays the conductor (a real gRPC server that records ReportInstanceEvents) and sends
BuildAndRunInstance in batches, timing from the first call to the last ACTIVE report.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from services.cli.launcher import Launcher
from services.common.generated.novagrpc.internal.v1 import (
    compute_pb2,
    compute_pb2_grpc,
    conductor_pb2,
    conductor_pb2_grpc,
)
from services.common.rpc.convert import to_timestamp
from tests.support.hosts import NODE_XML


class RecordingConductor(conductor_pb2_grpc.ConductorServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.active = 0
        self.failed = 0
        self.done = asyncio.Event()
        self.expected = 0
        self.registered = asyncio.Event()

    async def ReportInstanceEvents(self, request: Any, context: Any) -> Any:
        for event in request.events:
            if event.kind == conductor_pb2.INSTANCE_EVENT_KIND_ACTIVE:
                self.active += 1
            elif event.kind in (
                conductor_pb2.INSTANCE_EVENT_KIND_RESCHEDULE,
                conductor_pb2.INSTANCE_EVENT_KIND_FAILED,
            ):
                self.failed += 1
        if self.expected and self.active + self.failed >= self.expected:
            self.done.set()
        return conductor_pb2.ReportInstanceEventsResponse(applied=len(request.events))

    async def ReportComputeNode(self, request: Any, context: Any) -> Any:
        self.registered.set()
        return conductor_pb2.ComputeNodeAck(compute_node_id=1)

    async def ListHostInstances(self, request: Any, context: Any) -> Any:
        return conductor_pb2.ListHostInstancesResponse()


def _build(i: int) -> compute_pb2.InstanceBuild:
    return compute_pb2.InstanceBuild(
        instance_uuid=str(uuid.uuid4()),
        instance_id=i + 1,
        display_name=f"bench-{i}",
        project_id="bench",
        flavor=compute_pb2.FlavorSpec(id="1", name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1),
        image=compute_pb2.ImageSpec(id="img", name="nova-tiny", disk_format="raw"),
        created_at=to_timestamp(datetime.now(UTC)),
    )


async def _one_run(workdir: Path, limit: int, count: int) -> dict[str, Any]:
    conductor = RecordingConductor()
    server = grpc.aio.server()
    conductor_pb2_grpc.add_ConductorServicer_to_server(conductor, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    node = (workdir / "node.xml").resolve()
    launcher = Launcher(workdir)
    try:
        # in a thread: the compute registers with this loop's conductor while it starts
        address = await asyncio.to_thread(
            launcher.start, f"compute-{limit}", "services.compute",
            ["--listen", "127.0.0.1:0", "--conductor-addresses", f"127.0.0.1:{port}",
             "--host", f"bench-{limit}", "--libvirt-uri", f"test://{node}",
             "--max-concurrent-builds", str(limit),
             "--instances-path", str(workdir / f"instances-{limit}"), "--log-level", "WARNING",
             "--instance-name-template", "%(uuid)s",
             # simulated hosts share one real disk: let each claim a large share of it
             "--disk-allocation-ratio", "100", "--ram-allocation-ratio", "4",
             # this harness plays the conductor in plaintext
             "--insecure-internal", "true"],
            log=workdir / f"compute-{limit}.log",
        )  # fmt: skip
        await asyncio.wait_for(conductor.registered.wait(), 10)
        builds = [_build(i) for i in range(count)]
        conductor.expected = count
        async with grpc.aio.insecure_channel(address) as channel:
            stub = compute_pb2_grpc.ComputeStub(channel)
            started = time.perf_counter()
            for i in range(0, count, 100):
                request = compute_pb2.BuildAndRunInstanceRequest(builds=builds[i : i + 100])
                await stub.BuildAndRunInstance(request, timeout=30)
            await asyncio.wait_for(conductor.done.wait(), 300)
            elapsed = time.perf_counter() - started
        return {
            "figure": f"compute builds/s, max_concurrent_builds={limit}",
            "value": conductor.active / elapsed,
            "unit": "builds/s",
            "conditions": f"{count} builds (m1.tiny) in calls of 100 to one compute on "
            f"test:///node.xml (plaintext to this harness); {conductor.active} ACTIVE, "
            f"{conductor.failed} failed",
        }
    finally:
        await asyncio.to_thread(launcher.stop)
        await server.stop(0)


def run_compute_builds(workdir: Path, *, count: int = 1000) -> list[dict[str, Any]]:
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "run").mkdir(parents=True)  # the Launcher's ready files
    (workdir / "node.xml").write_text(NODE_XML)
    return [asyncio.run(_one_run(workdir, limit, count)) for limit in (1, 4, 10)]
