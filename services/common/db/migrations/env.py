"""Alembic environment. The URL comes from the Alembic config (set by ``migrate.upgrade``) or,
for a plain ``alembic upgrade head``, from NOVA_GRPC_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from services.common.db.engine import normalise_url
from services.common.db.models import Base

config = context.config
_configured = config.get_main_option("sqlalchemy.url") or os.environ.get("NOVA_GRPC_DATABASE_URL")
if not _configured:
    raise SystemExit("no database URL: set NOVA_GRPC_DATABASE_URL or sqlalchemy.url")
url: str = _configured


def run_migrations_offline() -> None:
    context.configure(url=normalise_url(url), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
