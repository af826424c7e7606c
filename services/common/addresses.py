"""Where an internal gRPC service listens and is reached: ``host:port`` or a unix-domain
socket ``unix:/absolute/path``.

A socket file is for peers on one machine that share no network: a socket in a directory
both see crosses network namespaces (a compute whose datapath lives in a namespace of its
own, a container beside its conductor), where a loopback address does not. gRPC removes a
stale socket file when it binds and the file when the server stops.
"""

from __future__ import annotations

from services.common.config import require

UNIX_PREFIX = "unix:"
# sun_path holds 108 bytes including the terminating NUL.
MAX_UNIX_PATH_BYTES = 107
FORMS = "host:port or unix:/absolute/path"


def is_unix(address: str) -> bool:
    return address.startswith(UNIX_PREFIX)


def unix_problem(address: str) -> str | None:
    """Why a ``unix:`` address cannot be used (None: it can). Only the absolute form
    ``unix:/path``: gRPC also reads ``unix:relative`` against the working directory and
    ``unix:///path`` as an authority, neither of which says plainly which file is meant."""
    path = address.removeprefix(UNIX_PREFIX)
    if not path.startswith("/") or path.startswith("//"):
        return f"a unix-domain socket is unix:/absolute/path, not {address!r}"
    if len(path.encode()) > MAX_UNIX_PATH_BYTES:
        return f"socket path longer than {MAX_UNIX_PATH_BYTES} bytes (the kernel's limit)"
    return None


def listen_problem(address: str) -> str | None:
    """Why ``address`` cannot be listened on or advertised (None: it can)."""
    if is_unix(address):
        return unix_problem(address)
    if ":" not in address:
        return f"must be {FORMS}"
    return None


def target_problem(address: str) -> str | None:
    """Why a peer's address (a gRPC target) cannot be dialled; only ``unix:`` targets are
    checked here (``host:port`` and ``dns:///name:port`` are gRPC's to resolve)."""
    return unix_problem(address) if is_unix(address) else None


def require_listen(name: str, address: str) -> None:
    """Settings validation: ConfigError naming ``name`` unless ``address`` can be bound."""
    problem = listen_problem(address)
    require(problem is None, name, problem or "")


def require_targets(name: str, addresses: tuple[str, ...]) -> None:
    """Settings validation of peers' addresses (see ``target_problem``)."""
    for address in addresses:
        problem = target_problem(address)
        require(problem is None, name, problem or "")
