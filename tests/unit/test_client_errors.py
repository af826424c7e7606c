"""The typed clients' one translation of gRPC errors into domain errors."""

from __future__ import annotations

import grpc
import pytest

from services.common.errors import HostUnreachable, PeerFailed, PeerRefused, Unavailable
from services.common.rpc.client_errors import wrap_errors
from services.common.rpc.errors import status_code_for

pytestmark = pytest.mark.timeout(10)


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.UNAVAILABLE, HostUnreachable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, HostUnreachable),
        (grpc.StatusCode.INVALID_ARGUMENT, PeerRefused),
        (grpc.StatusCode.NOT_FOUND, PeerRefused),
    ],
)
def test_every_grpc_error_leaves_the_client_as_a_domain_error(
    code: grpc.StatusCode, kind: type[PeerFailed]
) -> None:
    with pytest.raises(kind) as caught, wrap_errors("compute host at h:1"):
        raise rpc_error(code, "the peer's words")
    error = caught.value
    assert (error.peer, error.status, error.details) == ("compute host at h:1", code.name,
                                                         "the peer's words")  # fmt: skip
    assert str(error) == f"compute host at h:1 did not take the call: {code.name}: the peer's words"


def test_an_unreachable_host_passes_on_as_unavailable() -> None:
    error = HostUnreachable("conductor", "UNAVAILABLE")
    assert isinstance(error, Unavailable)
    assert status_code_for(error) == grpc.StatusCode.UNAVAILABLE
