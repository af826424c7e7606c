"""The one place where domain errors become gRPC statuses.

Every status carries google.rpc details (grpcio-status convention, trailer
``grpc-status-details-bin``): always an ErrorInfo (AIP-193: a stable reason from
services.common.errors.ErrorReason, the domain, metadata such as the field), and beside it
BadRequest field violations for INVALID_ARGUMENT, QuotaFailure for a quota, RetryInfo (the
delay to wait) for a rate limit, ResourceInfo for NOT_FOUND. Unexpected exceptions become
INTERNAL with a generic message (logged with their traceback here, never sent to the client).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from services.common.context import (
    REQUEST_ID_HEADER,
    new_request_id,
    request_id_var,
    rpc_method_var,
)
from services.common.errors import (
    ERROR_DOMAIN,
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    ErrorReason,
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


def error_info(reason: ErrorReason, metadata: dict[str, str] | None = None) -> Message:
    info: Message = error_details_pb2.ErrorInfo(
        reason=reason.value, domain=ERROR_DOMAIN, metadata=metadata or {}
    )
    return info


def _details(error: DomainError) -> list[Message]:
    """What a client can act on: the specific detail first (older clients read details[0]),
    then the ErrorInfo every error carries."""
    details: list[Message] = []
    if isinstance(error, InvalidArgument):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field or "", description=error.problem
                    )
                ]
            )
        )
    elif isinstance(error, QuotaExceeded):
        details.append(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=error.resource, description=error.message
                    )
                ]
            )
        )
    elif isinstance(error, NotFound):
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=error.kind, resource_name=error.ref, description=error.message
            )
        )
    elif isinstance(error, RateLimited) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(error.retry_after)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    details.append(error_info(error.reason, error.metadata))
    return details


def status_trailer(
    code: grpc.StatusCode, message: str, details: list[Message]
) -> tuple[tuple[str, bytes]]:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def rich_status_trailer(code: grpc.StatusCode, error: DomainError) -> tuple[tuple[str, bytes]]:
    return status_trailer(code, error.message, _details(error))


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
    message = f"internal error {incident} (the service log has the details)"
    await context.abort(
        grpc.StatusCode.INTERNAL,
        message,
        trailing_metadata=status_trailer(
            grpc.StatusCode.INTERNAL,
            message,
            [error_info(ErrorReason.INTERNAL_ERROR, {"incident": incident})],
        ),
    )


class _Undecodable:
    """Stands for a request message that did not parse, so that the handler can answer it
    with a status and details (gRPC's own answer to a deserializer error has neither)."""


UNDECODABLE = _Undecodable()


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception:
            return UNDECODABLE

    return parse


def _check_decoded(request: Any) -> None:
    if request is UNDECODABLE:
        raise InvalidArgument(
            "request",
            "not a valid protobuf encoding of this method's request message",
            reason=ErrorReason.MALFORMED_REQUEST,
        )


def _unknown_method(method: str) -> grpc.RpcMethodHandler:
    """UNIMPLEMENTED with an ErrorInfo for a method no service here has (the request is read
    as raw bytes: its type is unknown)."""

    async def refuse(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        message = f"no method {method[:200]!r} on this service"
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            message,
            trailing_metadata=status_trailer(
                grpc.StatusCode.UNIMPLEMENTED,
                message,
                [error_info(ErrorReason.METHOD_NOT_FOUND, {"method": method[:200]})],
            ),
        )

    return grpc.unary_unary_rpc_method_handler(refuse)


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
    *,
    metrics: RpcMetrics | None,
) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id_var.set(_request_id(context))
        if metrics is not None:
            metrics.start(method, kind)
        rpc_method_var.set(method)
        started, code = time.perf_counter(), "OK"
        try:
            _check_decoded(request)
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
                metrics.observe(method, kind, code_name=code, seconds=time.perf_counter() - started)

    return handler


def _wrap_stream(
    behavior: Callable[..., AsyncIterator[Any]],
    method: str,
    kind: RpcType,
    *,
    metrics: RpcMetrics | None,
) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id_var.set(_request_id(context))
        if metrics is not None:
            metrics.start(method, kind)
        rpc_method_var.set(method)
        started, code = time.perf_counter(), "OK"
        try:
            _check_decoded(request)
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
                metrics.observe(method, kind, code_name=code, seconds=time.perf_counter() - started)

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
        if handler is None:  # not cached: a hostile client may try any number of names
            return _unknown_method(method)
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
            _wrap_unary(handler.unary_unary, method, RpcType.UNARY, metrics=metrics),
            _tolerant(deserialize),
            serialize,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, method, RpcType.CLIENT_STREAM, metrics=metrics),
            deserialize,
            serialize,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, method, RpcType.SERVER_STREAM, metrics=metrics),
            _tolerant(deserialize),
            serialize,
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream(handler.stream_stream, method, RpcType.BIDI_STREAM, metrics=metrics),
        deserialize,
        serialize,
    )
