"""Domain errors. They carry no transport codes: one server interceptor maps each class to a
gRPC status code (services.common.rpc.errors). Every error that concerns one request field
names it, so the client learns which field to fix.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a use case may raise on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(DomainError):
    """The request is malformed: a field has a value no state of the system would accept."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.reason = message


class NotFound(DomainError):
    """A referenced object does not exist (or is not visible to the caller)."""

    def __init__(self, kind: str, ref: str, *, field: str | None = None) -> None:
        where = f"{field}: " if field else ""
        super().__init__(f"{where}{kind} {ref!r} not found", field=field)
        self.kind = kind
        self.ref = ref


class AlreadyExists(DomainError):
    """An object with that name (or id) exists already."""


class WrongState(DomainError):
    """The object exists but is in a state that does not allow the operation."""


class Unauthenticated(DomainError):
    """No valid credentials came with the request."""


class PermissionDenied(DomainError):
    """The caller may not do this."""


class QuotaExceeded(DomainError):
    """A per-project limit would be exceeded."""

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


class RateLimited(DomainError):
    """Too many requests from one project: retry after a moment."""


class DeadlineExceeded(DomainError):
    """The call ran out of the time the service allows it; its work was stopped."""


class Unavailable(DomainError):
    """A dependency (database, another service) cannot be reached now; retrying may work."""


class Aborted(DomainError):
    """The operation was ended by a concurrent one (a console session another one took over)."""


class PeerFailed(DomainError):
    """A call to another of our services failed. The typed clients (services.common.rpc)
    raise it, and its subclasses, in place of the transport's error, so a use case never
    sees a status code. ``reason`` is the transport's one-word account (as logged and put in
    faults), ``details`` what the peer said, if anything."""

    def __init__(self, peer: str, reason: str, details: str = "") -> None:
        said = f": {details}" if details and details != reason else ""
        super().__init__(f"{peer} did not take the call: {reason}{said}")
        self.peer = peer
        self.reason = reason
        self.details = details


class HostUnreachable(PeerFailed, Unavailable):
    """The peer did not answer in time or could not be reached: another host (or a retry
    later) may do better."""


class PeerRefused(PeerFailed):
    """The peer answered with an error of its own (it refused or failed the request)."""
