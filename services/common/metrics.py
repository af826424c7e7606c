"""Prometheus metrics: one registry per service (made in its composition root and handed to
whatever records), served over HTTP on the service's ``metrics_listen`` port.

A registry per service rather than the library's global one: several services can then live
in one process (the in-process test stack) without their metrics colliding.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class RpcType(Enum):
    """The ``grpc_type`` label: the shape of a method."""

    UNARY = "unary"
    CLIENT_STREAM = "client_stream"
    SERVER_STREAM = "server_stream"
    BIDI_STREAM = "bidi_stream"


def go_code_name(code_name: str) -> str:
    """``grpc_code`` as go-grpc-prometheus writes it (Go's ``codes.Code.String()``:
    ``InvalidArgument``, ``Canceled``), so stock dashboards and alert rules match it."""
    if code_name == "OK":
        return "OK"
    if code_name == "CANCELLED":
        return "Canceled"
    return "".join(part.capitalize() for part in code_name.split("_"))


# Children kept per cache; past it (only odd method paths would get there) labels() as before.
CHILDREN_CACHED = 512


@dataclass
class RpcMetrics:
    """What every gRPC server records, under the names and labels of go-grpc-prometheus (the
    de facto standard that stock gRPC dashboards and alert rules query): calls started, calls
    handled by status code, and the time to handle them."""

    started: Counter
    handled: Counter
    handling: Histogram
    # The labelled children, looked up once per method: ``labels()`` takes a lock and
    # builds its key on every call, a few percent of a flooded event loop (py-spy).
    _children: dict[tuple[str, ...], tuple[Counter, Histogram]] = field(
        default_factory=dict, repr=False
    )
    _handled: dict[tuple[str, ...], Counter] = field(default_factory=dict, repr=False)

    @staticmethod
    def create(registry: CollectorRegistry) -> RpcMetrics:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        return RpcMetrics(
            Counter(
                "grpc_server_started",
                "RPCs started on the server.",
                labels,
                registry=registry,
            ),
            Counter(
                "grpc_server_handled",
                "RPCs completed on the server, whatever their status code.",
                [*labels, "grpc_code"],
                registry=registry,
            ),
            Histogram(
                "grpc_server_handling_seconds",
                "Time to handle an RPC (streams: until the stream ends).",
                labels,
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )

    def start(self, path: str, kind: RpcType) -> None:
        """A call of ``path`` (``/package.Service/Method``) began."""
        self._of(path, kind)[0].inc()

    def observe(self, path: str, kind: RpcType, *, code_name: str, seconds: float) -> None:
        """A call of ``path`` ended with the status named ``code_name`` (``grpc.StatusCode``
        names: ``OK``, ``INVALID_ARGUMENT``) after ``seconds``."""
        self._of(path, kind)[1].observe(seconds)
        key = (path, kind.value, code_name)
        handled = self._handled.get(key)
        if handled is None:
            service, method = _split(path)
            handled = self.handled.labels(kind.value, service, method, go_code_name(code_name))
            if len(self._handled) < CHILDREN_CACHED:
                self._handled[key] = handled
        handled.inc()

    def _of(self, path: str, kind: RpcType) -> tuple[Counter, Histogram]:
        key = (path, kind.value)
        children = self._children.get(key)
        if children is None:
            service, method = _split(path)
            labels = (kind.value, service, method)
            children = (self.started.labels(*labels), self.handling.labels(*labels))
            if len(self._children) < CHILDREN_CACHED:  # the methods served are few
                self._children[key] = children
        return children


def _split(path: str) -> tuple[str, str]:
    service, _, method = path.lstrip("/").rpartition("/")
    return service, method


def gauge_from(
    registry: CollectorRegistry, name: str, help_text: str, *, read: Callable[[], float]
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
