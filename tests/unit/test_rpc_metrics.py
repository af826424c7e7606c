"""The error interceptor's metrics name the code each call really ended with."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from services.common.errors import NotFound
from services.common.metrics import CHILDREN_CACHED, RpcMetrics, RpcType, go_code_name
from services.common.rpc.errors import _wrap_unary


class _Context:
    """Just what the wrapper reads of a grpc.aio.ServicerContext before the call."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def abort(self, code: Any, message: str, trailing_metadata: Any = ()) -> None:
        raise RuntimeError(f"aborted {code.name}: {message}")


def _count(registry: CollectorRegistry, code: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": "x.Y", "grpc_method": "Z", "grpc_code": code}
    value = registry.get_sample_value("grpc_server_handled_total", labels)
    return value or 0.0


async def test_a_cancelled_unary_call_is_counted_as_cancelled() -> None:
    registry = CollectorRegistry()

    async def cancelled(request: Any, context: Any) -> None:
        raise asyncio.CancelledError

    handler = _wrap_unary(cancelled, "/x.Y/Z", RpcType.UNARY, metrics=RpcMetrics.create(registry))
    with pytest.raises(asyncio.CancelledError):
        await handler(None, _Context())
    assert _count(registry, "Canceled") == 1  # Go's spelling, as go-grpc-prometheus
    assert _count(registry, "OK") == 0


async def test_a_domain_error_is_counted_with_its_status() -> None:
    registry = CollectorRegistry()

    async def missing(request: Any, context: Any) -> None:
        raise NotFound("server", "abc", field="server_id")

    handler = _wrap_unary(missing, "/x.Y/Z", RpcType.UNARY, metrics=RpcMetrics.create(registry))
    with pytest.raises(RuntimeError, match="aborted NOT_FOUND"):
        await handler(None, _Context())
    assert _count(registry, "NotFound") == 1
    started = {"grpc_type": "unary", "grpc_service": "x.Y", "grpc_method": "Z"}
    assert registry.get_sample_value("grpc_server_started_total", started) == 1
    assert registry.get_sample_value("grpc_server_handling_seconds_count", started) == 1


def test_code_names_are_go_grpc_prometheus_names() -> None:
    assert [go_code_name(c.name) for c in grpc.StatusCode] == [
        "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
        "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
        "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
        "Unauthenticated",
    ]  # fmt: skip


def test_each_method_and_code_counted_apart_past_the_cached_children() -> None:
    registry = CollectorRegistry()
    metrics = RpcMetrics.create(registry)
    calls = [("/x.Y/Z", "OK"), ("/x.Y/Z", "OK"), ("/x.Y/Z", "NOT_FOUND")]
    calls += [(f"/x.Y/M{n}", "OK") for n in range(CHILDREN_CACHED + 10)]  # past the cache
    calls += [("/x.Y/M3", "OK"), (f"/x.Y/M{CHILDREN_CACHED + 5}", "OK")]
    for path, code in calls:
        metrics.start(path, RpcType.UNARY)
        metrics.observe(path, RpcType.UNARY, code_name=code, seconds=0.01)
    assert _count(registry, "OK") == 2
    assert _count(registry, "NotFound") == 1
    for method, expected in (("M3", 2), (f"M{CHILDREN_CACHED + 5}", 2), ("M7", 1)):
        labels = {"grpc_type": "unary", "grpc_service": "x.Y", "grpc_method": method}
        assert registry.get_sample_value("grpc_server_started_total", labels) == expected
        assert registry.get_sample_value("grpc_server_handling_seconds_count", labels) == expected
