"""novactl's watch outlives its stream: through a drop and through an api restart on the same
port, every change is shown exactly once and nothing already shown is repeated.

The api here is a small WatchServers double over real gRPC (port 0, then the same port again):
the test must decide exactly when a stream breaks and what changes while no stream is open.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest

from services.cli.client import Client, Connection
from services.cli.commands.watching import events
from services.cli.output import short_name
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc

pytestmark = pytest.mark.timeout(60)
WAIT = 20.0
DROP = object()


@dataclass
class World(servers_pb2_grpc.ServersServicer):
    """The servers and the open streams; ``change`` is seen by every open stream."""

    servers: dict[str, servers_pb2.Server] = field(default_factory=dict)
    streams: list[queue.Queue[object]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    opened: threading.Condition = field(default_factory=threading.Condition)
    opens: int = 0

    def change(self, server_id: str, status: int) -> None:
        server = servers_pb2.Server(id=server_id, name=server_id, status=status)  # type: ignore[arg-type]
        with self.lock:
            self.servers[server_id] = server
            for stream in self.streams:
                stream.put(server)

    def drop(self) -> None:
        with self.lock:
            for stream in self.streams:
                stream.put(DROP)

    def wait_opens(self, count: int) -> None:
        with self.opened:
            assert self.opened.wait_for(lambda: self.opens >= count, WAIT)

    def WatchServers(
        self, request: servers_pb2.WatchServersRequest, context: grpc.ServicerContext
    ) -> Iterator[servers_pb2.ServerEvent]:
        mine: queue.Queue[object] = queue.Queue()
        with self.lock:
            self.streams.append(mine)
            snapshot = list(self.servers.values())
        with self.opened:
            self.opens += 1
            self.opened.notify_all()
        try:
            for server in snapshot:
                yield servers_pb2.ServerEvent(server=server, change="snapshot")
            while context.is_active():
                try:
                    item = mine.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is DROP:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by the test")
                assert isinstance(item, servers_pb2.Server)
                yield servers_pb2.ServerEvent(server=item, change="update")
        finally:
            with self.lock:
                self.streams.remove(mine)


def serve(world: World, port: int = 0) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servers_pb2_grpc.add_ServersServicer_to_server(world, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


class Seen:
    """The events the watch yields, collected by a thread; the test waits for a count."""

    def __init__(self, client: Client) -> None:
        self.items: list[tuple[str, str, str]] = []
        self.notes: list[str] = []
        self.pauses: list[float] = []
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(client,), daemon=True)
        self.thread.start()

    def _run(self, client: Client) -> None:
        try:
            for event in events(client, servers_pb2.WatchServersRequest(), timeout=None,
                                notify=self.notes.append, pause=self.pauses.append):  # fmt: skip
                status = short_name(servers_pb2.ServerStatus.DESCRIPTOR, event.server.status)
                with self.changed:
                    self.items.append((event.change, event.server.id, status))
                    self.changed.notify_all()
                if event.server.id == "s3" and status == "ACTIVE":
                    return
        except BaseException as exc:
            self.error = exc
            with self.changed:
                self.changed.notify_all()

    def wait(self, count: int) -> list[tuple[str, str, str]]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.items) >= count or self.error is not None, WAIT)
        assert self.error is None, self.error
        assert len(self.items) >= count, self.items
        return list(self.items)


def test_watch_resumes_across_a_drop_and_a_restart_without_losing_or_repeating() -> None:
    world = World()
    world.change("s1", servers_pb2.SERVER_STATUS_BUILD)
    world.change("s2", servers_pb2.SERVER_STATUS_BUILD)
    first, port = serve(world)
    client = Client(Connection(endpoint=f"127.0.0.1:{port}", token="t", tls=False), timeout=5.0)
    seen = Seen(client)
    assert seen.wait(2) == [("snapshot", "s1", "BUILD"), ("snapshot", "s2", "BUILD")]
    world.change("s1", servers_pb2.SERVER_STATUS_ACTIVE)
    seen.wait(3)

    world.drop()  # the stream breaks; the new one's snapshot holds nothing new
    world.wait_opens(2)
    world.change("s2", servers_pb2.SERVER_STATUS_ACTIVE)
    assert seen.wait(4)[3] == ("update", "s2", "ACTIVE")

    first.stop(grace=None)  # the api goes away; changes happen while nobody watches
    first.wait_for_termination(WAIT)
    world.change("s2", servers_pb2.SERVER_STATUS_ERROR)
    world.change("s3", servers_pb2.SERVER_STATUS_BUILD)
    second, _ = serve(world, port)
    try:
        world.wait_opens(3)
        items = seen.wait(6)
        world.change("s3", servers_pb2.SERVER_STATUS_ACTIVE)
        items = seen.wait(7)
        seen.thread.join(WAIT)
    finally:
        second.stop(grace=None)
    assert items == [
        ("snapshot", "s1", "BUILD"), ("snapshot", "s2", "BUILD"), ("update", "s1", "ACTIVE"),
        ("update", "s2", "ACTIVE"),
        # missed while the api was down: shown as updates, s1 (unchanged) not repeated
        ("update", "s2", "ERROR"), ("update", "s3", "BUILD"),
        ("update", "s3", "ACTIVE"),
    ]  # fmt: skip
    assert len(seen.notes) == 2 and all("reconnecting" in n for n in seen.notes), seen.notes
    assert "UNAVAILABLE" in seen.notes[0]


def test_a_first_stream_that_fails_is_an_error_not_a_retry() -> None:
    world = World()
    server, port = serve(world)
    server.stop(grace=None)
    server.wait_for_termination(WAIT)
    client = Client(Connection(endpoint=f"127.0.0.1:{port}", token="t", tls=False), timeout=5.0)
    with pytest.raises(grpc.RpcError) as caught:
        next(events(client, servers_pb2.WatchServersRequest(), timeout=None))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
