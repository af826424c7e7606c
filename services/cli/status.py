"""What novactl reads from a failed call's rich status (google.rpc details in the
``grpc-status-details-bin`` trailer, as the api sends them): the ErrorInfo reason it prints, and
the RetryInfo delay after which a rate-limited call may be sent again."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

# novactl waits at most this long for any one retry, whatever the server asks: a person is
# waiting at the terminal, and a far delay is better reported than slept through.
MAX_RETRY_DELAY = timedelta(seconds=10)
DEFAULT_RETRIES = 3


def _status(exc: grpc.RpcError) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(exc)  # type: ignore[arg-type]
    except (ValueError, AttributeError):  # a trailer that contradicts the call's own status
        return None


def _detail(exc: grpc.RpcError, detail: Message) -> bool:
    """Fill ``detail`` from the status's first detail of its type; False when there is none."""
    status = _status(exc)
    return status is not None and any(packed.Unpack(detail) for packed in status.details)


def reason(exc: grpc.RpcError) -> str:
    """The ErrorInfo reason ("" when the status carries none: another server, or a status
    gRPC itself made)."""
    info = error_details_pb2.ErrorInfo()
    return str(info.reason) if _detail(exc, info) else ""


def retry_delay(exc: grpc.RpcError) -> timedelta | None:
    """The delay the server asked for before a retry; None when it asked for none."""
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:  # type: ignore[attr-defined]
        return None
    info = error_details_pb2.RetryInfo()
    if not _detail(exc, info):
        return None
    delay: timedelta = info.retry_delay.ToTimedelta()
    return max(delay, timedelta(0))


def describe(exc: grpc.RpcError) -> str:
    """``CODE [REASON]: message`` as novactl prints a failed call."""
    code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    why = reason(exc)
    return f"{code} [{why}]: {details}" if why else f"{code}: {details}"
