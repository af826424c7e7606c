"""The one place where domain errors become gRPC statuses.

Every status carries google.rpc details (grpcio-status convention, trailer
``grpc-status-details-bin``): BadRequest field violations for INVALID_ARGUMENT, QuotaFailure
for RESOURCE_EXHAUSTED, ResourceInfo for NOT_FOUND. Unexpected exceptions become INTERNAL with
a generic message (logged with their traceback here, never sent to the client).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.common.context import (
    REQUEST_ID_HEADER,
    new_request_id,
    request_id_var,
    rpc_method_var,
)
from services.common.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    Unauthenticated,
    Unavailable,
    WrongState,
)
from services.common.metrics import RpcMetrics, RpcType

log = logging.getLogger(__name__)

STATUS_DETAILS_KEY = "grpc-status-details-bin"

_CODES: list[tuple[type[DomainError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (WrongState, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Aborted, grpc.StatusCode.ABORTED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
]


def status_code_for(error: DomainError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def _detail(error: DomainError) -> Any | None:
    if isinstance(error, InvalidArgument):
        return error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=error.field or "", description=error.reason
                )
            ]
        )
    if isinstance(error, QuotaExceeded):
        return error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(
                    subject=error.resource, description=error.message
                )
            ]
        )
    if isinstance(error, NotFound):
        return error_details_pb2.ResourceInfo(
            resource_type=error.kind, resource_name=error.ref, description=error.message
        )
    return None


def rich_status_trailer(code: grpc.StatusCode, error: DomainError) -> tuple[tuple[str, bytes]]:
    status = status_pb2.Status(code=code.value[0], message=error.message)
    detail = _detail(error)
    if detail is not None:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, DomainError):
        return status_code_for(exc)
    return grpc.StatusCode.INTERNAL


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if isinstance(exc, DomainError):
        code = status_code_for(exc)
        await context.abort(code, exc.message, trailing_metadata=rich_status_trailer(code, exc))
    incident = uuid.uuid4().hex[:12]
    log.exception("internal error %s", incident, exc_info=exc)
    trailer = status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error {incident}")
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error {incident} (the service log has the details)",
        trailing_metadata=((STATUS_DETAILS_KEY, trailer.SerializeToString()),),
    )


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and value:
            return value[:64]
    return new_request_id()


def _aborted_code(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The code a servicer aborted with itself (context.abort)."""
    code = context.code() if hasattr(context, "code") else None
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]],
    method: str,
    kind: RpcType,
    metrics: RpcMetrics | None,
) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id_var.set(_request_id(context))
        if metrics is not None:
            metrics.start(method, kind)
        rpc_method_var.set(method)
        started, code = time.perf_counter(), "OK"
        try:
            return await behavior(request, context)
        except asyncio.CancelledError:  # the client went away or its deadline passed
            code = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            code = _aborted_code(context)
            raise
        except (DomainError, Exception) as exc:
            code = code_of(exc).name
            await _abort_for(exc, context)
        finally:
            if metrics is not None:
                metrics.observe(method, kind, code, time.perf_counter() - started)

    return handler


def _wrap_stream(
    behavior: Callable[..., AsyncIterator[Any]],
    method: str,
    kind: RpcType,
    metrics: RpcMetrics | None,
) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id_var.set(_request_id(context))
        if metrics is not None:
            metrics.start(method, kind)
        rpc_method_var.set(method)
        started, code = time.perf_counter(), "OK"
        try:
            async for item in behavior(request, context):
                yield item
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            code = _aborted_code(context)
            raise
        except (DomainError, Exception) as exc:
            code = code_of(exc).name
            await _abort_for(exc, context)
        finally:
            if metrics is not None:
                metrics.observe(method, kind, code, time.perf_counter() - started)

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps domain errors to statuses and sets the request id for every RPC."""

    def __init__(self, metrics: RpcMetrics | None = None) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler] = {}
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = _wrap_handler(handler, method, self._metrics)
        self._cache[method] = wrapped
        return wrapped


def _wrap_handler(
    handler: grpc.RpcMethodHandler, method: str, metrics: RpcMetrics | None
) -> grpc.RpcMethodHandler:
    deserialize = handler.request_deserializer
    serialize = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, method, RpcType.UNARY, metrics),
            deserialize,
            serialize,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, method, RpcType.CLIENT_STREAM, metrics),
            deserialize,
            serialize,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, method, RpcType.SERVER_STREAM, metrics),
            deserialize,
            serialize,
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream(handler.stream_stream, method, RpcType.BIDI_STREAM, metrics),
        deserialize,
        serialize,
    )
