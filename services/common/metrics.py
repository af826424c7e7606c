"""Prometheus metrics: one registry per service (made in its composition root and handed to
whatever records), served over HTTP on the service's ``metrics_listen`` port.

A registry per service rather than the library's global one: several services can then live
in one process (the in-process test stack) without their metrics colliding.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass
class RpcMetrics:
    """What every gRPC server records: calls by method and status code, and their latency."""

    requests: Counter
    latency: Histogram

    @staticmethod
    def create(registry: CollectorRegistry) -> RpcMetrics:
        return RpcMetrics(
            Counter(
                "nova_grpc_rpc_requests",
                "gRPC calls handled, by method and status code.",
                ["method", "code"],
                registry=registry,
            ),
            Histogram(
                "nova_grpc_rpc_duration_seconds",
                "Time to answer a gRPC call (streams: until the stream ends), by method.",
                ["method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)


def gauge_from(
    registry: CollectorRegistry, name: str, help_text: str, read: Callable[[], float]
) -> Gauge:
    """A gauge whose value is read when Prometheus scrapes."""
    gauge = Gauge(name, help_text, registry=registry)
    gauge.set_function(read)
    return gauge


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.address = ""
        if listen:
            self._server, self._thread = start_http_server(
                int(port), addr=host or "0.0.0.0", registry=registry
            )
            bound_host, bound_port = self._server.server_address[:2]
            shown = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
            self.address = f"{shown}:{bound_port}"
            log.info("metrics on http://%s/metrics", self.address)

    async def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
