"""novactl's watch against the real api through a TCP proxy the test cuts: after the drop it
reconnects with the resume token of the last event, and shows every change made while the
connection was down (a stop, a create), each once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from services.cli.client import Client, Connection
from services.cli.commands.watching import events
from services.cli.output import short_name
from services.common.generated.novagrpc.v1 import servers_pb2
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(150)
WAIT = 60.0


class Proxy:
    """Forwards 127.0.0.1:<port> to the api; ``block`` cuts every connection and refuses new
    ones until ``unblock``."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.blocked = threading.Event()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def block(self) -> None:
        self.blocked.set()
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.open.clear()

    def unblock(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self.listener.close()
        self.block()


class Recording(Client):
    """The real client; it only remembers the resume token of each WatchServers it opens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_tokens: list[str] = []

    def stream(self, method: Any, request: Any, timeout: float | None, *,
               wait_for_ready: bool = False) -> Any:  # fmt: skip
        self.resume_tokens.append(request.resume_token)
        return super().stream(method, request, timeout, wait_for_ready=wait_for_ready)


async def test_novactl_resumes_a_dropped_watch_without_losing_a_change(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        reply = await stack.servers.CreateServer(create("first"), timeout=5)
        (first,) = await stack.wait_settled(list(reply.server_ids))
        proxy = Proxy(stack.api.address)
        stack.on_exit(proxy.close)
        connection = Connection(endpoint=f"127.0.0.1:{proxy.port}", token=stack.token, tls=False)
        client = Recording(connection, timeout=10.0)
        seen: list[tuple[str, str, str]] = []
        states: list[bytes] = []  # each server state shown, whole
        notes: list[str] = []
        changed = threading.Condition()
        stop = threading.Event()

        def watch() -> None:
            for event in events(client, servers_pb2.WatchServersRequest(), timeout=WAIT * 2,
                                notify=notes.append, pause=lambda _: None):  # fmt: skip
                status = short_name(servers_pb2.ServerStatus.DESCRIPTOR, event.server.status)
                with changed:
                    seen.append((event.change, event.server.name, status))
                    states.append(event.server.SerializeToString(deterministic=True))
                    changed.notify_all()
                if stop.is_set():
                    return

        def wait_for(item: tuple[str, str, str]) -> bool:
            with changed:
                return changed.wait_for(lambda: item in seen, WAIT)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert await asyncio.to_thread(wait_for, ("snapshot", "first", "ACTIVE")), seen
        proxy.block()  # the stream drops; nothing gets through while the changes happen
        await stack.servers.StopServer(servers_pb2.StopServerRequest(id=first.id), timeout=5)
        await stack.wait_status(first.id, servers_pb2.SERVER_STATUS_SHUTOFF)
        reply = await stack.servers.CreateServer(create("second"), timeout=5)
        await stack.wait_settled(list(reply.server_ids))
        proxy.unblock()
        assert await asyncio.to_thread(wait_for, ("update", "first", "SHUTOFF")), seen
        assert await asyncio.to_thread(wait_for, ("update", "second", "ACTIVE")), seen
        stop.set()
        await stack.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=first.id), timeout=5)
        await asyncio.to_thread(watcher.join, WAIT)
        assert any("reconnecting" in n for n in notes), notes
        # the first stream took a snapshot; every later one resumed from the last token
        assert client.resume_tokens[0] == "" and len(client.resume_tokens) >= 2
        assert all(client.resume_tokens[1:]), client.resume_tokens
        # no state shown twice (one status may well be shown twice: SHUTOFF while the stop is
        # being settled, then SHUTOFF settled, when a resume falls between the two writes)
        assert len(states) == len(set(states)), seen
