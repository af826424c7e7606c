"""The error interceptor's metrics name the code each call really ended with."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.common.errors import NotFound
from services.common.metrics import RpcMetrics
from services.common.rpc.errors import _wrap_unary


class _Context:
    """Just what the wrapper reads of a grpc.aio.ServicerContext before the call."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def abort(self, code: Any, message: str, trailing_metadata: Any = ()) -> None:
        raise RuntimeError(f"aborted {code.name}: {message}")


def _count(registry: CollectorRegistry, code: str) -> float:
    value = registry.get_sample_value(
        "nova_grpc_rpc_requests_total", {"method": "/x.Y/Z", "code": code}
    )
    return value or 0.0


async def test_a_cancelled_unary_call_is_counted_as_cancelled() -> None:
    registry = CollectorRegistry()

    async def cancelled(request: Any, context: Any) -> None:
        raise asyncio.CancelledError

    handler = _wrap_unary(cancelled, "/x.Y/Z", RpcMetrics.create(registry))
    with pytest.raises(asyncio.CancelledError):
        await handler(None, _Context())
    assert _count(registry, "CANCELLED") == 1
    assert _count(registry, "OK") == 0


async def test_a_domain_error_is_counted_with_its_status() -> None:
    registry = CollectorRegistry()

    async def missing(request: Any, context: Any) -> None:
        raise NotFound("server", "abc", field="server_id")

    handler = _wrap_unary(missing, "/x.Y/Z", RpcMetrics.create(registry))
    with pytest.raises(RuntimeError, match="aborted NOT_FOUND"):
        await handler(None, _Context())
    assert _count(registry, "NOT_FOUND") == 1
