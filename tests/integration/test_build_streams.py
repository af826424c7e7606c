"""The build streams between the api's caster and the conductor's servicer over real gRPC
(port 0): the conductor ends streams by age and when it drains, the caster re-sends what a
stream did not read, and no cast is lost. The conductor's BuildTask is replaced by a recorder
(the servicer only hands it what it read)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from services.common.generated.novagrpc.internal.v1 import conductor_pb2_grpc
from services.common.rpc.channels import ChannelPool
from services.common.rpc.conductor_client import BuildCaster
from services.common.rpc.server import Registration, ServiceServer, start_server
from services.conductor.servicer import ConductorServicer
from services.conductor.streams import BuildStreams

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """Stands in for BuildTask: what the servicer submitted."""

    def __init__(self, changed: asyncio.Event) -> None:
        self.uuids: list[str] = []
        self.changed = changed  # may be shared by several recorders

    def submit(
        self, instance_uuids: Sequence[str], request_id: str = "", password: str = ""
    ) -> None:
        self.uuids.extend(instance_uuids)
        self.changed.set()

    async def wait_for(self, wanted: set[str]) -> None:
        await received(wanted, self)


async def received(wanted: set[str], *recorders: Recorder) -> None:
    """Until ``wanted`` all arrived, at one recorder or another."""
    while not wanted <= {u for r in recorders for u in r.uuids}:
        recorders[0].changed.clear()
        await recorders[0].changed.wait()


@asynccontextmanager
async def conductor(
    max_age: float | None, changed: asyncio.Event | None = None
) -> AsyncIterator[tuple[ServiceServer, Recorder, BuildStreams]]:
    recorder = Recorder(changed or asyncio.Event())
    streams = BuildStreams(max_age=max_age)
    servicer = ConductorServicer(
        recorder, None, None, deletes=None, power=None, streams=streams, port_rules=None,
        scope=None,
    )  # type: ignore[arg-type]
    name = "novagrpc.internal.v1.Conductor"
    server = await start_server(
        "127.0.0.1:0",
        [Registration(conductor_pb2_grpc.add_ConductorServicer_to_server, servicer, name)],
    )
    try:
        yield server, recorder, streams
    finally:
        await server.stop(0)


def cast_many(caster: BuildCaster, count: int) -> set[str]:
    sent = set()
    for _ in range(count):
        server = str(uuid.uuid4())
        caster.cast([server], reservation_id="r-1", request_id="req")
        sent.add(server)
    return sent


async def test_streams_ended_by_age_lose_nothing() -> None:
    async with conductor(max_age=0.05) as (server, recorder, _streams):
        channels = ChannelPool(None)
        caster = BuildCaster(channels, [f"127.0.0.1:{server.port}"], streams_per_address=2)
        caster.start()
        try:
            sent: set[str] = set()
            for _ in range(20):  # bursts, while streams end every ~50 ms
                burst = cast_many(caster, 50)
                sent |= burst
                await asyncio.wait_for(recorder.wait_for(burst), 20)
        finally:
            await caster.close()
            await channels.close()
    assert set(recorder.uuids) == sent
    # every duplicate is one the caster knowingly sent again
    assert len(recorder.uuids) - len(sent) <= caster.resent


async def test_a_draining_conductor_hands_its_unread_casts_to_another() -> None:
    changed = asyncio.Event()
    async with (
        conductor(None, changed) as (first, first_got, first_streams),
        conductor(None, changed) as (second, second_got, _),
    ):
        channels = ChannelPool(None)
        caster = BuildCaster(channels, [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"])
        caster.start()
        try:
            sent = cast_many(caster, 200)
            await asyncio.wait_for(received(sent, first_got, second_got), 20)
            assert first_got.uuids, "the first conductor's stream took part"
            # drain the first while casts are in flight to it
            during = cast_many(caster, 300)
            await first_streams.end_all(timeout=5)
            after = cast_many(caster, 200)  # the first takes no new stream: all to the second
            sent |= during | after
            await asyncio.wait_for(received(sent, first_got, second_got), 20)
        finally:
            await caster.close()
            await channels.close()
    assert not after & set(first_got.uuids)
    assert sent == set(first_got.uuids) | set(second_got.uuids)
