"""Per-request context carried through a service (and across services in gRPC metadata)."""

from __future__ import annotations

import contextvars
import uuid

REQUEST_ID_HEADER = "x-request-id"


def request_metadata(request_id: str) -> tuple[tuple[str, str], ...] | None:
    """gRPC metadata that carries ``request_id`` to the next service (None when there is none)."""
    return ((REQUEST_ID_HEADER, request_id),) if request_id else None


request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def new_request_id() -> str:
    return "req-" + str(uuid.uuid4())


def current_request_id() -> str:
    return request_id_var.get()


# The RPC being served (its method name, e.g. "ListServers"): set by the server's interceptor.
rpc_method_var: contextvars.ContextVar[str] = contextvars.ContextVar("rpc_method", default="")


# The project a public call acts for (set once its token is known): shared capacity such as
# the database's read threads is shared out fairly between projects by it.
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


# Set by compute for the work of one instance: every build log line names it.
instance_uuid_var: contextvars.ContextVar[str] = contextvars.ContextVar("instance_uuid", default="")


def current_instance_uuid() -> str:
    return instance_uuid_var.get()
