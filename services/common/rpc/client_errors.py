"""The typed clients' one translation of gRPC errors into domain errors (as google-api-core's
``wrap_errors``): whatever a call raises leaves the client as a PeerFailed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from services.common.errors import HostUnreachable, PeerFailed, PeerRefused

# The peer was not reached, did not answer in time, or broke off: the host's fault, not the
# request's.
_UNREACHABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    }
)


def peer_error(exc: grpc.aio.AioRpcError, *, peer: str) -> PeerFailed:
    code = exc.code()
    kind = HostUnreachable if code in _UNREACHABLE else PeerRefused
    return kind(peer, code.name, exc.details() or "")


@contextlib.contextmanager
def wrap_errors(peer: str) -> Iterator[None]:
    """Around a call (its retries included) to ``peer``."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise peer_error(exc, peer=peer) from exc
