"""The local PostgreSQL 15 cluster for tests: started when down, one fresh database per use."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

ROLE = "novagrpc_test"
PASSWORD = "novagrpc_test"


class PostgresUnavailable(RuntimeError):
    pass


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def _psql(sql: str) -> None:
    result = _run("runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-c", sql)
    if result.returncode != 0:
        raise PostgresUnavailable(f"psql {sql!r}: {result.stderr.strip()}")


def ensure_cluster() -> None:
    if shutil.which("pg_ctlcluster") is None:
        raise PostgresUnavailable("PostgreSQL is not installed (pg_ctlcluster missing)")
    status = _run("pg_lsclusters", "-h")
    if "online" not in status.stdout:
        started = _run("pg_ctlcluster", "15", "main", "start")
        if started.returncode != 0:
            raise PostgresUnavailable(f"pg_ctlcluster start: {started.stderr.strip()}")
    _psql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN "
        f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'; END IF; END $$;"
    )


def create_database(template: str = "") -> str:
    """A new database, empty or a copy of the database ``template`` names (a URL from here,
    that nothing is connected to); returns its SQLAlchemy URL."""
    ensure_cluster()
    name = "novagrpc_" + uuid.uuid4().hex[:12]
    copy = f" TEMPLATE {template.rsplit('/', 1)[1]}" if template else ""
    _psql(f"CREATE DATABASE {name} OWNER {ROLE}{copy}")
    return f"postgresql+psycopg://{ROLE}:{PASSWORD}@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class PrivateCluster:
    """A PostgreSQL 15 cluster of one test's own (its own directory and port), for tests that
    stop and start the database: stopping the shared cluster would break every other test
    that uses it at the time."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self) -> None:
        if not (self.BIN / "initdb").exists():
            raise PostgresUnavailable(f"PostgreSQL 15 is not installed ({self.BIN} missing)")
        # Not under pytest's tmp_path: that is private to root, and postgres must own this.
        self.directory = Path(tempfile.mkdtemp(prefix="novagrpc-pg-"))
        shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self.port = _free_port()
        result = self._as_postgres(
            str(self.BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync",
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb: {result.stderr.strip()}")

    def _as_postgres(self, *command: str) -> subprocess.CompletedProcess[str]:
        return _run("runuser", "-u", "postgres", "--", *command)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = self._as_postgres(
            str(self.BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl start: {result.stderr.strip()} {self.log()}")

    def stop(self) -> None:
        """Fast shutdown: clients' connections are cut, new ones refused."""
        result = self._as_postgres(
            str(self.BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
        )
        if result.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl stop: {result.stderr.strip()}")

    def create_database(self, name: str = "nova") -> str:
        result = self._as_postgres(
            str(self.BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {name}",
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresUnavailable(f"create database: {result.stderr.strip()}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def log(self) -> str:
        path = self.directory / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        self._as_postgres(
            str(self.BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
