"""Reading the google.rpc details of a failed call (the grpc-status-details-bin trailer)."""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
M = TypeVar("M", bound=Message)


def rich_status(error: grpc.RpcError) -> status_pb2.Status:
    trailers: Any = error.trailing_metadata()  # type: ignore[attr-defined]
    for key, value in trailers or ():
        if key == DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            assert status.code == error.code().value[0]  # type: ignore[attr-defined]
            assert status.message == error.details()  # type: ignore[attr-defined]
            return status
    raise AssertionError(f"no {DETAILS_KEY} on {error}")


def detail(error: grpc.RpcError, kind: type[M]) -> M | None:
    """The status's detail of that type, None when it has none."""
    for packed in rich_status(error).details:
        found = kind()
        if packed.Unpack(found):
            return found
    return None


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo every error of the api carries (AIP-193), checked for form."""
    info = detail(error, error_details_pb2.ErrorInfo)
    assert info is not None, f"no ErrorInfo on {error}"
    assert info.domain == "novagrpc.dev"
    assert info.reason and len(info.reason) <= 63
    assert info.reason == info.reason.upper() and info.reason.replace("_", "").isalnum()
    return info
