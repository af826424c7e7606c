"""Settings of a server's client connections that let replicas scale out behind a DNS name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.common.config import require, setting


@dataclass(frozen=True)
class ConnectionAgeSettings:
    max_connection_age: timedelta = setting(
        timedelta(seconds=120),
        "Seconds after which the server asks a client to reconnect (HTTP/2 GOAWAY), so that "
        "clients resolve the service's DNS name again and spread over replicas added since; "
        "0: never.",
    )
    max_connection_age_grace: timedelta = setting(
        timedelta(seconds=60),
        "Seconds the calls of a connection asked to reconnect may still run before they are cut.",
    )

    def check_connection_age(self) -> None:
        require(self.max_connection_age >= timedelta(0), "max_connection_age", "must be >= 0")
        require(
            self.max_connection_age_grace > timedelta(0), "max_connection_age_grace", "must be > 0"
        )

    def connection_age(self) -> timedelta | None:
        return self.max_connection_age or None

    def connection_age_grace(self) -> timedelta:
        return self.max_connection_age_grace
