"""The one mapping of domain errors to rich statuses, and novactl's reading of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from services.api.admission import Admission
from services.api.rate_limit import RateLimiter
from services.cli.client import Client, Connection
from services.cli.status import describe, reason, retry_delay
from services.common import errors
from services.common.rpc.errors import rich_status_trailer, status_code_for

pytestmark = pytest.mark.timeout(10)

EVERY_ERROR: list[errors.DomainError] = [
    errors.InvalidArgument("name", "too long"),
    errors.NotFound("flavor", "m1.huge", field="flavor_ref"),
    errors.AlreadyExists("name: exists", field="name"),
    errors.WrongState("not running"),
    errors.Unauthenticated("bad token"),
    errors.PermissionDenied("no"),
    errors.QuotaExceeded("instances", limit=1, in_use=1, requested=1),
    errors.RateLimited("slow down", retry_after=timedelta(milliseconds=250)),
    errors.DeadlineExceeded("too slow"),
    errors.Unavailable("db down"),
    errors.Aborted("taken over"),
]


def unpacked(error: errors.DomainError) -> tuple[status_pb2.Status, dict[str, Any]]:
    code = status_code_for(error)
    ((key, value),) = rich_status_trailer(code, error)
    assert key == "grpc-status-details-bin"
    status = status_pb2.Status.FromString(value)
    assert (status.code, status.message) == (code.value[0], error.message)
    found: dict[str, Any] = {}
    for packed in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo,
                     error_details_pb2.QuotaFailure, error_details_pb2.BadRequest,
                     error_details_pb2.ResourceInfo):  # fmt: skip
            detail = kind()
            if packed.Unpack(detail):
                found[kind.DESCRIPTOR.name] = detail
    return status, found


@pytest.mark.parametrize("error", EVERY_ERROR, ids=lambda e: type(e).__name__)
def test_every_domain_error_carries_an_error_info(error: errors.DomainError) -> None:
    _, found = unpacked(error)
    info = found["ErrorInfo"]
    assert info.domain == errors.ERROR_DOMAIN
    assert info.reason == error.reason.value and info.reason in errors.ErrorReason.__members__
    if error.field:
        assert info.metadata["field"] == error.field


def test_a_rate_limit_is_told_apart_from_a_quota() -> None:
    _, limited = unpacked(errors.RateLimited("x", retry_after=timedelta(milliseconds=250)))
    assert limited["ErrorInfo"].reason == "RATE_LIMITED"
    assert limited["RetryInfo"].retry_delay.ToTimedelta() == timedelta(milliseconds=250)
    assert "QuotaFailure" not in limited
    _, quota = unpacked(errors.QuotaExceeded("cores", limit=4, in_use=4, requested=2))
    assert quota["ErrorInfo"].reason == "QUOTA_EXCEEDED"
    assert dict(quota["ErrorInfo"].metadata) == {
        "field": "cores", "resource": "cores", "limit": "4", "in_use": "4", "requested": "2"
    }  # fmt: skip
    assert quota["QuotaFailure"].violations[0].subject == "cores"
    assert "RetryInfo" not in quota


def test_the_rate_limiter_says_how_long_until_its_next_token() -> None:
    now = [100.0]
    limiter = RateLimiter(4, burst=1, clock=lambda: now[0])
    limiter.check("p")
    now[0] += 0.05  # a fifth of a token back
    with pytest.raises(errors.RateLimited) as caught:
        limiter.check("p")
    assert caught.value.retry_after is not None
    assert caught.value.retry_after.total_seconds() == pytest.approx(0.2)
    assert caught.value.reason is errors.ErrorReason.RATE_LIMITED


def test_admission_caps_have_their_own_reasons() -> None:
    admission = Admission(calls_per_project=1, streams_per_project=1)
    admission.enter("p")
    admission.enter("p", stream=True)
    with pytest.raises(errors.RateLimited) as calls:
        admission.enter("p")
    assert calls.value.reason is errors.ErrorReason.TOO_MANY_CALLS_IN_FLIGHT
    assert calls.value.retry_after is not None
    with pytest.raises(errors.RateLimited) as streams:
        admission.enter("p", stream=True)
    assert streams.value.reason is errors.ErrorReason.TOO_MANY_STREAMS
    assert streams.value.retry_after is None  # a stream ends when its client says


class Refusal(grpc.RpcError):
    """A failed call as grpc's client raises it, with the api's rich status."""

    def __init__(self, error: errors.DomainError) -> None:
        self._code = status_code_for(error)
        self._message = error.message
        self._trailer = rich_status_trailer(self._code, error)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._trailer


class Flaky:
    """A stub method that fails ``failures`` times with ``error``, then answers."""

    def __init__(self, error: errors.DomainError, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self, request: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise Refusal(self.error)
        return "answer"


def client(slept: list[float], retries: int = 3) -> Client:
    connection = Connection(endpoint="127.0.0.1:1", token="t", tls=False)
    return Client(connection, 1.0, retries=retries, sleep=slept.append)


def test_novactl_retries_a_rate_limit_after_the_servers_delay() -> None:
    slept: list[float] = []
    method = Flaky(errors.RateLimited("x", retry_after=timedelta(seconds=1.5)), failures=2)
    assert client(slept).call(method, None) == "answer"
    assert (method.calls, slept) == (3, [1.5, 1.5])


def test_novactl_retries_are_bounded() -> None:
    slept: list[float] = []
    method = Flaky(errors.RateLimited("x", retry_after=timedelta(seconds=0.1)), failures=99)
    with pytest.raises(Refusal):
        client(slept, retries=2).call(method, None)
    assert method.calls == 3 and len(slept) == 2
    # a delay longer than novactl is willing to wait is reported, not slept through
    far = Flaky(errors.RateLimited("x", retry_after=timedelta(minutes=5)), failures=1)
    with pytest.raises(Refusal):
        client(slept).call(far, None)
    assert far.calls == 1


@pytest.mark.parametrize(
    "error",
    [errors.QuotaExceeded("instances", limit=1, in_use=1, requested=1),
     errors.RateLimited("streams", reason=errors.ErrorReason.TOO_MANY_STREAMS),
     errors.Unavailable("down")],
    ids=["quota", "no-retry-info", "unavailable"],
)  # fmt: skip
def test_novactl_does_not_retry_what_the_server_gave_no_delay_for(
    error: errors.DomainError,
) -> None:
    slept: list[float] = []
    method = Flaky(error, failures=1)
    with pytest.raises(Refusal):
        client(slept).call(method, None)
    assert method.calls == 1 and slept == []


def test_novactl_prints_the_reason() -> None:
    refusal = Refusal(errors.NotFound("flavor", "m1.huge", field="flavor_ref"))
    assert reason(refusal) == "RESOURCE_NOT_FOUND"
    assert describe(refusal) == (
        "NOT_FOUND [RESOURCE_NOT_FOUND]: flavor_ref: flavor 'm1.huge' not found"
    )
    assert retry_delay(refusal) is None
