"""A server-side time limit for every unary call of a service.

A client may send no deadline, or a far one; the service still stops the call's work after
``limit`` (its task is cancelled, which stops its database reads and frees their threads:
db/read_guard.py) and answers DEADLINE_EXCEEDED. Streams are bounded by per-project caps
instead (they are meant to stay open).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc

from services.common.errors import DeadlineExceeded


class DeadlineInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, limit: timedelta) -> None:
        self._limit = limit.total_seconds()
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.unary_unary:
            return handler
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is None:
            cached = grpc.unary_unary_rpc_method_handler(
                self._bounded(handler.unary_unary, method.rsplit("/", 1)[-1]),
                handler.request_deserializer,
                handler.response_serializer,
            )
            self._cache[method] = cached
        return cached

    def _bounded(
        self, behavior: Callable[..., Awaitable[Any]], method: str
    ) -> Callable[..., Awaitable[Any]]:
        limit = self._limit

        async def bounded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                async with asyncio.timeout(limit):
                    return await behavior(request, context)
            except TimeoutError as exc:
                raise DeadlineExceeded(
                    f"{method} took longer than the service allows ({limit:g}s) and was stopped"
                ) from exc

        return bounded
