"""Domain errors. They carry no transport codes: one server interceptor maps each class to a
gRPC status code (services.common.rpc.errors). Every error that concerns one request field
names it, so the client learns which field to fix.

Each error also carries a stable machine-readable ``reason`` (ErrorReason, UPPER_SNAKE_CASE as
AIP-193 asks) and string ``metadata`` (the field, the resource...): clients branch on those,
never on the message text, which may change.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import ClassVar

# The ErrorInfo domain of every error of this service (AIP-193: the service's name).
ERROR_DOMAIN = "novagrpc.dev"


class ErrorReason(StrEnum):
    """The catalogue of reasons: stable API, add new ones, never rename."""

    INVALID_FIELD = "INVALID_FIELD"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    WRONG_STATE = "WRONG_STATE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    ADMIN_ONLY = "ADMIN_ONLY"
    READ_ONLY_TOKEN = "READ_ONLY_TOKEN"
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_INVALID = "TOKEN_INVALID"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    RATE_LIMITED = "RATE_LIMITED"
    TOO_MANY_CALLS_IN_FLIGHT = "TOO_MANY_CALLS_IN_FLIGHT"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    CONCURRENT_CHANGE = "CONCURRENT_CHANGE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class DomainError(Exception):
    """Base of every error a use case may raise on purpose."""

    default_reason: ClassVar[ErrorReason] = ErrorReason.WRONG_STATE

    def __init__(
        self, message: str, *, field: str | None = None, reason: ErrorReason | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason or self.default_reason

    @property
    def metadata(self) -> dict[str, str]:
        """ErrorInfo metadata: what a client may act on besides the reason."""
        return {"field": self.field} if self.field else {}


class InvalidArgument(DomainError):
    """The request is malformed: a field has a value no state of the system would accept."""

    default_reason = ErrorReason.INVALID_FIELD

    def __init__(self, field: str, message: str, *, reason: ErrorReason | None = None) -> None:
        super().__init__(f"{field}: {message}", field=field, reason=reason)
        # what is wrong with the field (the BadRequest violation's description)
        self.problem = message


class NotFound(DomainError):
    """A referenced object does not exist (or is not visible to the caller)."""

    default_reason = ErrorReason.RESOURCE_NOT_FOUND

    def __init__(self, kind: str, ref: str, *, field: str | None = None) -> None:
        where = f"{field}: " if field else ""
        super().__init__(f"{where}{kind} {ref!r} not found", field=field)
        self.kind = kind
        self.ref = ref

    @property
    def metadata(self) -> dict[str, str]:
        # the ref itself is the caller's own input: bounded so that a hostile one stays small
        return {**super().metadata, "resource_type": self.kind, "resource_name": self.ref[:256]}


class AlreadyExists(DomainError):
    """An object with that name (or id) exists already."""

    default_reason = ErrorReason.ALREADY_EXISTS


class WrongState(DomainError):
    """The object exists but is in a state that does not allow the operation."""

    default_reason = ErrorReason.WRONG_STATE


class Unauthenticated(DomainError):
    """No valid credentials came with the request."""

    default_reason = ErrorReason.TOKEN_INVALID


class PermissionDenied(DomainError):
    """The caller may not do this."""

    default_reason = ErrorReason.PERMISSION_DENIED


class QuotaExceeded(DomainError):
    """A per-project limit would be exceeded: retrying will not help until usage drops or the
    limit is raised (compare RateLimited)."""

    default_reason = ErrorReason.QUOTA_EXCEEDED

    def __init__(self, resource: str, *, limit: int, in_use: int, requested: int) -> None:
        over = in_use + requested - limit
        super().__init__(
            f"quota exceeded for {resource}: limit {limit}, in use {in_use}, "
            f"requested {requested} ({over} over)",
            field=resource,
        )
        self.resource = resource
        self.limit = limit
        self.in_use = in_use
        self.requested = requested

    @property
    def metadata(self) -> dict[str, str]:
        return {
            **super().metadata,
            "resource": self.resource,
            "limit": str(self.limit),
            "in_use": str(self.in_use),
            "requested": str(self.requested),
        }


class RateLimited(DomainError):
    """Too many requests from one project: the same call may succeed after ``retry_after``
    (None: when one of the project's other calls or streams ends, a time nobody knows)."""

    default_reason = ErrorReason.RATE_LIMITED

    def __init__(
        self,
        message: str,
        *,
        retry_after: timedelta | None = None,
        reason: ErrorReason | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after

    @property
    def metadata(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry_after_ms": str(max(1, round(self.retry_after.total_seconds() * 1000)))}


class DeadlineExceeded(DomainError):
    """The call ran out of the time the service allows it; its work was stopped."""

    default_reason = ErrorReason.DEADLINE_EXCEEDED


class Unavailable(DomainError):
    """A dependency (database, another service) cannot be reached now; retrying may work."""

    default_reason = ErrorReason.SERVICE_UNAVAILABLE


class Aborted(DomainError):
    """The operation was ended by a concurrent one (a console session another one took over)."""

    default_reason = ErrorReason.CONCURRENT_CHANGE


class PeerFailed(DomainError):
    """A call to another of our services failed. The typed clients (services.common.rpc)
    raise it, and its subclasses, in place of the transport's error, so a use case never
    sees a status code. ``status`` is the transport's one-word account (as logged and put in
    faults; not ``reason``, which is the ErrorInfo reason of every domain error), ``details``
    what the peer said, if anything."""

    default_reason = ErrorReason.SERVICE_UNAVAILABLE

    def __init__(self, peer: str, status: str, details: str = "") -> None:
        said = f": {details}" if details and details != status else ""
        super().__init__(f"{peer} did not take the call: {status}{said}")
        self.peer = peer
        self.status = status
        self.details = details


class HostUnreachable(PeerFailed, Unavailable):
    """The peer did not answer in time or could not be reached: another host (or a retry
    later) may do better."""


class PeerRefused(PeerFailed):
    """The peer answered with an error of its own (it refused or failed the request)."""
