"""Who is asking: the project and roles of the caller's token, and the request id."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import ErrorReason, PermissionDenied


@dataclass(frozen=True, slots=True)
class RequestContext:
    project_id: str
    request_id: str
    is_admin: bool = False

    @property
    def scope(self) -> str | None:
        """The project filter for reads and writes: None (all projects) for admins."""
        return None if self.is_admin else self.project_id


def require_admin(context: RequestContext, what: str) -> None:
    """The one admin check of the api, so every refusal reads ``<what> is admin-only``."""
    if not context.is_admin:
        raise PermissionDenied(f"{what} is admin-only", reason=ErrorReason.ADMIN_ONLY)
