"""The api service's settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc

from services.common.addresses import require_targets
from services.common.config import require, setting
from services.common.service_settings import ServiceSettings
from services.common.tls_reload import KeyPairFiles, ReloadingServerCredentials

DEFAULT_DATABASE_URL = "sqlite:///var/nova.sqlite"


@dataclass(frozen=True)
class ApiSettings(ServiceSettings):
    listen: str = setting(
        "127.0.0.1:8774", "Address the public gRPC API listens on (host:port; port 0 = any free)."
    )
    public_tls_cert: str = setting(
        "",
        "Certificate chain (PEM) the public API serves TLS with; empty: plaintext (behind a TLS "
        "front). Reloaded when the file changes.",
    )
    public_tls_key: str = setting("", "The private key of public_tls_cert (PEM).")
    database_url: str = setting(
        DEFAULT_DATABASE_URL, "SQLAlchemy URL of the database (sqlite:///path or postgresql://...)."
    )
    sqlite_checkpoint_interval: timedelta = setting(
        timedelta(seconds=1),
        "On SQLite, seconds between checkpoints of its write-ahead log, taken on a thread of "
        "their own instead of inside whichever commit finds the log long (which held the one "
        "writer up to 100 ms).",
    )
    conductor_addresses: tuple[str, ...] = setting(
        ("127.0.0.1:8780",),
        "Conductor addresses (comma-separated; dns:///name:port spreads over every address of "
        "a name; unix:/absolute/path is a conductor's unix-domain socket).",
    )
    conductor_streams: int = setting(
        1, "Build streams opened per conductor address (one per conductor behind a DNS name)."
    )
    auth_cache_seconds: timedelta = setting(
        timedelta(seconds=30),
        "How long a token lookup is cached (a revoked token works at most this long).",
    )
    shutdown_grace_seconds: timedelta = setting(
        timedelta(seconds=5),
        "How long in-flight RPCs may run after SIGTERM before they are cancelled.",
    )
    image_store_path: str = setting(
        "var/images", "Directory holding image files; RegisterImage only reads files inside it."
    )
    service_down_time: timedelta = setting(
        timedelta(seconds=60),
        "Seconds without a heartbeat after which a compute host is shown as down.",
    )
    rate_limit_per_second: float = setting(
        500.0, "Public API calls per project per second, bursts of twice that (0: no limit)."
    )
    rpc_deadline_seconds: timedelta = setting(
        timedelta(seconds=5),
        "Server-side time limit of every unary public call: past it the call's work (its "
        "database reads too) is stopped and it answers DEADLINE_EXCEEDED.",
    )
    read_threads_per_project: int = setting(
        1,
        "Database read threads (of 4) one project may hold at once. A read of a large page "
        "is CPU work under the interpreter lock: each thread a flooding project holds takes "
        "a share of it from every other project's calls.",
    )
    create_servers_per_project: int = setting(
        100,
        "Servers one project's CreateServer calls in flight may add up to; its next create "
        "waits for one of them to end (creates share transactions: a project's big creates "
        "must not fill every other project's).",
    )
    create_batch_servers: int = setting(
        64,
        "Servers one create transaction makes at most. Concurrent creates share a transaction "
        "(and SQLite's one writer), projects taking turns in it; a larger create goes alone, "
        "so another project's create never queues behind more than the one in hand.",
    )
    create_share: float = setting(
        0.05,
        "While other projects' calls are in flight, the part of the time one project may keep "
        "its create_servers_per_project budget full: a create's servers go back to it after a "
        "rest in proportion to the time it took (1: at once). A project below its budget (a "
        "few small creates) never waits; one creating 100 servers at a time does, since every "
        "other project's create waits for each of its transactions (SQLite has one writer).",
    )
    expensive_call_share: float = setting(
        0.25,
        "While other projects' calls are in flight, the part of the interpreter's time one "
        "large read (a page of ListServers) may take; it pauses to keep to it (1: never).",
    )
    switch_interval_ms: float = setting(
        1.0,
        "How often (ms) a thread running Python code hands the interpreter lock on (Python's "
        "default is 5): a database thread building a large page then delays another "
        "project's call on the event loop by at most this, not 5 ms per hand-over.",
    )
    max_calls_per_project: int = setting(
        64, "Public calls of one project in flight at once, RESOURCE_EXHAUSTED beyond (0: no cap)."
    )
    max_streams_per_project: int = setting(
        16, "Open WatchServers streams of one project, RESOURCE_EXHAUSTED beyond (0: no cap)."
    )
    oidc_issuer: str = setting(
        "", "OpenID Connect issuer whose JWTs are accepted as bearer tokens (empty: none)."
    )
    oidc_audience: str = setting("", "The audience (aud) the JWTs must be issued for.")
    oidc_jwks_url: str = setting("", "The issuer's JWKS URL (fetched and cached).")
    oidc_jwks_file: str = setting("", "The issuer's JWKS as a file (instead of the URL).")
    oidc_jwks_cache_seconds: timedelta = setting(
        timedelta(seconds=300), "How long a fetched JWKS is kept."
    )
    oidc_project_claim: str = setting("project_id", "The claim that names the project.")
    oidc_roles_claim: str = setting(
        "roles", "The claim listing roles (member, admin, reader; others are ignored)."
    )
    oidc_default_role: str = setting("member", "The role of a JWT that names none.")
    oidc_leeway_seconds: timedelta = setting(
        timedelta(seconds=30), "Clock skew allowed on exp/iat/nbf (at most 300 s)."
    )
    quota_instances: int = setting(10, "Default instances per project (-1: unlimited).")
    quota_cores: int = setting(20, "Default vCPUs per project (-1: unlimited).")
    quota_ram: int = setting(51200, "Default MiB of RAM per project (-1: unlimited).")
    console_timeout_seconds: timedelta = setting(
        timedelta(seconds=10), "Deadline of one console-output call to a compute host."
    )
    console_sessions_per_project: int = setting(
        4, "Interactive console sessions one project may hold open through one api process."
    )

    def __post_init__(self) -> None:
        self._check()
        self.check_service()

    def _check(self) -> None:
        require(":" in self.listen, "listen", "must be host:port")
        require(bool(self.conductor_addresses), "conductor_addresses", "must name a conductor")
        require_targets("conductor_addresses", self.conductor_addresses)
        require(self.auth_cache_seconds >= timedelta(0), "auth_cache_seconds", "must be >= 0")
        require(self.conductor_streams >= 1, "conductor_streams", "must be >= 1")
        require(self.rate_limit_per_second >= 0, "rate_limit_per_second", "must be >= 0")
        require(
            self.console_sessions_per_project >= 1, "console_sessions_per_project", "must be >= 1"
        )
        require(
            self.console_timeout_seconds > timedelta(0), "console_timeout_seconds", "must be > 0"
        )
        require(
            bool(self.public_tls_cert) == bool(self.public_tls_key),
            "public_tls_key" if self.public_tls_cert else "public_tls_cert",
            "public_tls_cert and public_tls_key go together",
        )
        if self.oidc_issuer:
            require(bool(self.oidc_audience), "oidc_audience", "required with oidc_issuer")
            require(
                bool(self.oidc_jwks_url) != bool(self.oidc_jwks_file),
                "oidc_jwks_url",
                "give the issuer's keys as oidc_jwks_url or oidc_jwks_file (one of them)",
            )
            require(
                self.oidc_default_role in ("member", "admin", "reader"),
                "oidc_default_role",
                "must be member, admin or reader",
            )
        require(
            timedelta(0) <= self.oidc_leeway_seconds <= timedelta(seconds=300),
            "oidc_leeway_seconds",
            "must be 0 to 300",
        )
        require(self.rpc_deadline_seconds > timedelta(0), "rpc_deadline_seconds", "must be > 0")
        require(
            self.sqlite_checkpoint_interval > timedelta(0),
            "sqlite_checkpoint_interval",
            "must be > 0",
        )
        require(1 <= self.read_threads_per_project <= 4, "read_threads_per_project", "1 to 4")
        require(self.create_servers_per_project >= 1, "create_servers_per_project", "must be >= 1")
        require(self.create_batch_servers >= 1, "create_batch_servers", "must be >= 1")
        require(0 < self.create_share <= 1, "create_share", "must be in (0, 1]")
        require(0 < self.expensive_call_share <= 1, "expensive_call_share", "must be in (0, 1]")
        require(0 < self.switch_interval_ms <= 100, "switch_interval_ms", "must be in (0, 100]")
        for name in ("max_calls_per_project", "max_streams_per_project"):
            require(getattr(self, name) >= 0, name, "must be >= 0 (0: no cap)")
        require(
            self.shutdown_grace_seconds >= timedelta(0), "shutdown_grace_seconds", "must be >= 0"
        )
        for name in ("quota_instances", "quota_cores", "quota_ram"):
            require(getattr(self, name) >= -1, name, "must be -1 (unlimited) or more")

    def public_credentials(self) -> grpc.ServerCredentials | None:
        """TLS for the public port (following its files), or None for plaintext."""
        if not self.public_tls_cert:
            return None
        files = KeyPairFiles(Path(self.public_tls_cert), Path(self.public_tls_key))
        return ReloadingServerCredentials(files).credentials()

    @property
    def default_quotas(self) -> dict[str, int]:
        return {"instances": self.quota_instances, "cores": self.quota_cores, "ram": self.quota_ram}
