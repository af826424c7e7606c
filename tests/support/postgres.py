"""The local PostgreSQL 15 cluster for tests: started when down, one fresh database per use."""

from __future__ import annotations

import shutil
import subprocess
import uuid

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


def create_database() -> str:
    """A new empty database; returns its SQLAlchemy URL."""
    ensure_cluster()
    name = "novagrpc_" + uuid.uuid4().hex[:12]
    _psql(f"CREATE DATABASE {name} OWNER {ROLE}")
    return f"postgresql+psycopg://{ROLE}:{PASSWORD}@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
