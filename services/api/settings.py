"""The api service's settings."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import require, setting

DEFAULT_DATABASE_URL = "sqlite:///var/nova.sqlite"


@dataclass(frozen=True)
class ApiSettings:
    listen: str = setting(
        "127.0.0.1:8774", "Address the public gRPC API listens on (host:port; port 0 = any free)."
    )
    database_url: str = setting(
        DEFAULT_DATABASE_URL, "SQLAlchemy URL of the database (sqlite:///path or postgresql://...)."
    )
    conductor_addresses: tuple[str, ...] = setting(
        ("127.0.0.1:8780",), "Conductor addresses (comma-separated); one build stream each."
    )
    auth_cache_seconds: float = setting(
        30.0, "How long a token lookup is cached (a revoked token works at most this long)."
    )
    ready_file: str = setting(
        "", "When set, the bound address is written here once the service is serving."
    )
    shutdown_grace_seconds: float = setting(
        5.0, "How long in-flight RPCs may run after SIGTERM before they are cancelled."
    )
    log_level: str = setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.")

    def __post_init__(self) -> None:
        require(":" in self.listen, "listen", "must be host:port")
        require(bool(self.conductor_addresses), "conductor_addresses", "must name a conductor")
        require(self.auth_cache_seconds >= 0, "auth_cache_seconds", "must be >= 0")
        require(self.shutdown_grace_seconds >= 0, "shutdown_grace_seconds", "must be >= 0")
