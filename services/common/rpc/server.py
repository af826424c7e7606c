"""Builds a service's gRPC server: health, reflection, the error interceptor, limits, and a
clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.common.addresses import is_unix
from services.common.metrics import RpcMetrics
from services.common.rpc.deadlines import DeadlineInterceptor
from services.common.rpc.errors import ErrorInterceptor
from services.common.rpc.peers import CallerInterceptor, CallerPolicy

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# The health service name kubelet's liveness probe asks for. It says SERVING from start until
# shutdown and never follows the dependencies: an answer at all proves the event loop (which
# answers it) is not stuck, and a database or libvirt outage must not restart healthy pods.
# Readiness is the overall status ("") and each mounted service's name.
LIVENESS_SERVICE = "liveness"

# Keepalive lets the long-lived BuildInstances stream notice a dead peer within seconds.
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class Registration:
    """A servicer to mount: the generated ``add_XServicer_to_server`` and its service name."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    service_name: str


class ServiceServer:
    def __init__(
        self,
        server: grpc.aio.Server,
        health: HealthServicer,
        port: int,
        *,
        service_names: Sequence[str],
        health_server: grpc.aio.Server | None = None,
    ) -> None:
        self.server = server
        self.health = health
        self.port = port
        self.service_names = list(service_names)
        self.health_server = health_server

    async def set_serving(self, serving: bool) -> None:
        """Readiness: the overall status and every mounted service (never liveness)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)


async def start_server(
    listen: str,
    registrations: Sequence[Registration],
    *,
    credentials: grpc.ServerCredentials | None = None,
    metrics: RpcMetrics | None = None,
    health_listen: str = "",
    max_connection_age: timedelta | None = None,
    max_connection_age_grace: timedelta | None = None,
    callers: CallerPolicy | None = None,
    unary_deadline: timedelta | None = None,
) -> ServiceServer:
    """Bind ``listen`` (port 0 picks a free port; ``unix:/path`` a socket file), mount the
    servicers and start; with ``credentials`` the port speaks TLS (mutual, for the internal
    services).

    Readiness starts NOT_SERVING; the service flips it once its dependencies answer.
    Liveness (``LIVENESS_SERVICE``) is SERVING as soon as the server runs.

    ``max_connection_age``: clients are asked (GOAWAY) to reconnect after it, so that they
    resolve a DNS name again and find replicas added since; their calls may run on for
    ``max_connection_age_grace``.
    ``unary_deadline`` stops every unary call that runs longer (DEADLINE_EXCEEDED).
    ``callers`` says which internal role may call which method (needs ``credentials``: the
    role comes from the client's certificate)."""
    if callers is not None and credentials is None:
        raise ValueError("a caller policy needs TLS credentials (identities come from them)")
    options = list(SERVER_OPTIONS)
    if max_connection_age is not None:
        options.append(("grpc.max_connection_age_ms", _ms(max_connection_age)))
        if max_connection_age_grace is not None:
            options.append(("grpc.max_connection_age_grace_ms", _ms(max_connection_age_grace)))
    interceptors: list[grpc.aio.ServerInterceptor] = [ErrorInterceptor(metrics)]
    if callers is not None:
        interceptors.append(CallerInterceptor(callers))
    if unary_deadline is not None:
        interceptors.append(DeadlineInterceptor(unary_deadline))
    server = grpc.aio.server(options=options, interceptors=interceptors)
    for registration in registrations:
        registration.add_to_server(registration.servicer, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [r.service_name for r in registrations]
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    if credentials is None:
        port = server.add_insecure_port(listen)
    else:
        port = server.add_secure_port(listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    health_server = None
    if health_listen:
        # Plaintext, health only: kubelet's gRPC probe cannot present a client certificate.
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health, health_server)
        if health_server.add_insecure_port(health_listen) == 0:
            raise OSError(f"cannot listen on {health_listen}")
        await health_server.start()
    service_server = ServiceServer(
        server, health, port, service_names=names, health_server=health_server
    )
    await service_server.set_serving(False)
    await health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return service_server


def _ms(duration: timedelta) -> int:
    return max(int(duration.total_seconds() * 1000), 1)


def bound_address(listen: str, port: int) -> str:
    """The address peers reach ``listen`` at once bound: a socket file is its own address
    (gRPC reports port 1 for it), a host:port gets the port actually bound (port 0)."""
    if is_unix(listen):
        return listen
    host = listen.rsplit(":", 1)[0]
    return f"{host}:{port}"


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: the service's cue to drain and exit."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
