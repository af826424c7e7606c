"""Following WatchServers: ``server watch`` and every ``--wait``.

A watch outlives its stream: when the stream drops (the api restarts, a proxy cuts it, the api
ends a watcher that fell too far behind), novactl opens a new one with the resume_token of the
last event it got: the api then sends every server changed since instead of a snapshot. When
the api cannot resume (FAILED_PRECONDITION on resume_token: too old, servers archived since)
or predates resume tokens, the new stream starts with a snapshot of the servers in scope, so
nothing that changed meanwhile is missed either way; servers whose state novactl has already
shown are not shown again, and a changed one is shown as an ``update`` rather than as part of
a snapshot.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

import grpc

from services.cli.client import Client
from services.cli.commands.progress import Progress
from services.cli.errors import CliError
from services.cli.output import Format, View, emit, short_name, to_dict
from services.common.generated.novagrpc.v1 import servers_pb2

DELETED = servers_pb2.SERVER_STATUS_DELETED
SETTLED = {"ACTIVE", "ERROR", "DELETED", "SHUTOFF"}
# Codes after which a new stream may well work; others (NOT_FOUND, PERMISSION_DENIED, ...) will
# fail again the same way.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}  # fmt: skip
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


def _status(server: servers_pb2.Server) -> str:
    return short_name(servers_pb2.ServerStatus.DESCRIPTOR, server.status)


def _say(message: str) -> None:
    sys.stderr.write(f"watch: {message}\n")
    sys.stderr.flush()


@dataclass
class _Shown:
    """What the user has seen of each server, so that a new stream's snapshot repeats nothing."""

    states: dict[str, bytes] = field(default_factory=dict)
    resumed: bool = False

    def fresh(self, event: servers_pb2.ServerEvent) -> bool:
        state = event.server.SerializeToString(deterministic=True)
        if self.states.get(event.server.id) == state:
            return False
        self.states[event.server.id] = state
        if self.resumed and event.change == "snapshot":
            event.change = "update"  # it changed while the stream was down
        return True

    def deleted(self, server_id: str) -> bool:
        state = self.states.get(server_id)
        return state is not None and servers_pb2.Server.FromString(state).status == DELETED


def events(
    client: Client, request: servers_pb2.WatchServersRequest, *, timeout: float | None,
    notify: Callable[[str], None] = _say, pause: Callable[[float], None] = time.sleep,
) -> Iterator[servers_pb2.ServerEvent]:  # fmt: skip
    """Every change in scope, across as many streams as it takes, until ``timeout`` (None:
    until the caller stops). A watch of one server ends when that server is deleted."""
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = _Shown()
    backoff = FIRST_BACKOFF
    token = ""  # where a new stream resumes ("": from a snapshot)
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise CliError(f"timed out after {timeout:.0f}s")
        attempt = servers_pb2.WatchServersRequest()
        attempt.CopyFrom(request)
        attempt.resume_token = token
        # A reconnect waits for the api to come back rather than failing at once.
        stream = client.stream(client.servers.WatchServers, attempt, remaining,
                               wait_for_ready=shown.resumed)  # fmt: skip
        received = False
        try:
            for event in stream:
                received = True
                token = event.resume_token or token
                if shown.fresh(event):
                    yield event
            if request.server_id and shown.deleted(request.server_id):
                return
            reason = "the api ended the stream"
        except grpc.RpcError as exc:
            if token and _resume_refused(exc):
                notify(f"cannot resume ({exc.details()}); taking a new snapshot")  # type: ignore[attr-defined]
                token = ""
                continue
            reason = _dropped(exc, request, resumed=shown.resumed or received, timeout=timeout,
                              deadline=deadline)  # fmt: skip
            if not reason:
                notify(f"server {request.server_id} is gone")
                return
        finally:
            stream.cancel()
        notify(f"{reason}; reconnecting")
        if received:
            backoff = FIRST_BACKOFF
        else:  # the last reconnect failed at once: do not spin
            pause(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        shown.resumed = True


def _resume_refused(exc: grpc.RpcError) -> bool:
    code = exc.code()  # type: ignore[attr-defined]
    return code == grpc.StatusCode.FAILED_PRECONDITION and "resume_token" in str(exc.details())  # type: ignore[attr-defined]


def _dropped(
    exc: grpc.RpcError, request: servers_pb2.WatchServersRequest, *, resumed: bool,
    timeout: float | None, deadline: float | None,
) -> str:  # fmt: skip
    """Why the stream dropped, if a new one may work ("" when the watched server is gone);
    raises otherwise. A first stream that fails at once is an error, not a drop."""
    code = exc.code()  # type: ignore[attr-defined]
    if deadline is not None and time.monotonic() >= deadline:
        raise CliError(f"timed out after {timeout:.0f}s") from exc
    if resumed and code == grpc.StatusCode.NOT_FOUND and request.server_id:
        return ""
    if not resumed or code not in RETRYABLE:
        raise exc
    return f"stream dropped ({code.name}: {exc.details()})"  # type: ignore[attr-defined]


def wait_settled(
    client: Client, reply: servers_pb2.CreateServerResponse, *, timeout: float, progress: Progress
) -> list[servers_pb2.Server]:
    """Follow the reservation until every server settles, counting BUILD / ACTIVE / ERROR."""
    wanted = set(reply.server_ids)
    latest: dict[str, servers_pb2.Server] = {}
    request = servers_pb2.WatchServersRequest(reservation_id=reply.reservation_id)
    try:
        for event in events(client, request, timeout=timeout):
            if event.server.id not in wanted:
                continue
            latest[event.server.id] = event.server
            progress.show(reply.reservation_id, Counter(_status(s) for s in latest.values()))
            if len(latest) == len(wanted) and all(_status(s) in SETTLED for s in latest.values()):
                break
    finally:
        progress.done()
    return [latest[i] for i in reply.server_ids]


def watch_one(client: Client, server_id: str, until: set[str], *, timeout: float) -> str:
    request = servers_pb2.WatchServersRequest(server_id=server_id)
    for event in events(client, request, timeout=timeout):
        status = _status(event.server)
        if status in until and not event.server.task_state:
            return status
    return "DELETED"  # a watched server's stream ends when it is deleted


def follow(
    client: Client, request: servers_pb2.WatchServersRequest, view: View, *, out: TextIO
) -> int:
    """``server watch``: print each change until interrupted."""
    for event in events(client, request, timeout=None):
        data = to_dict(event.server)
        if view.structured:
            if view.format is Format.YAML:
                out.write("---\n")
            emit({"change": event.change, "server": data}, View(format=view.format), out)
        else:
            columns = view.columns or ("id", "status", "task_state", "power_state")
            cells = [event.change, *(str(data.get(c) or "-") for c in columns)]
            widths = [8, 36, 7, 12, 0]
            out.write(" ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip())
            out.write("\n")
        out.flush()
    return 0
