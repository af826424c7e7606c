"""novactl server create --wait-ready: wait until every guest says, from inside, that it is
up (the server's guest_ready time), not only until its domain runs (ACTIVE)."""

from __future__ import annotations

import grpc

from services.cli.client import Client, CliError
from services.common.generated.novagrpc.v1 import servers_pb2

GAVE_UP = {
    servers_pb2.SERVER_STATUS_ERROR,
    servers_pb2.SERVER_STATUS_DELETED,
    servers_pb2.SERVER_STATUS_SHUTOFF,
}


def wait_ready(
    client: Client, reply: servers_pb2.CreateServerResponse, timeout: float
) -> list[servers_pb2.Server]:
    """The servers once each has guest_ready, or as they were when one of them gave up
    (ERROR, SHUTOFF or DELETED: it will not get ready by itself)."""
    wanted = set(reply.server_ids)
    latest: dict[str, servers_pb2.Server] = {}
    stream = client.stream(
        client.servers.WatchServers,
        servers_pb2.WatchServersRequest(reservation_id=reply.reservation_id),
        timeout,
    )
    try:
        for event in stream:
            if event.server.id not in wanted:
                continue
            latest[event.server.id] = event.server
            if event.server.status in GAVE_UP:
                break
            if len(latest) == len(wanted) and all(
                s.HasField("guest_ready") for s in latest.values()
            ):
                break
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
            raise CliError(
                f"timed out after {timeout:.0f}s waiting for the guests to say they are ready"
            ) from exc
        raise
    finally:
        stream.cancel()
    return [latest[i] for i in reply.server_ids if i in latest]
