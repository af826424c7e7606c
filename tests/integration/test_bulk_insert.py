"""insert_rows stores exactly what SQLAlchemy's own executemany stores, column for column."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from services.common.db.bulk import insert_rows
from services.common.db.engine import Database
from services.common.db.models import INSTANCES

pytestmark = pytest.mark.timeout(60)

SHARED_METADATA = {"role": "web", "ünïcode": "✓"}
SHARED_TIME = datetime(2026, 1, 1, tzinfo=UTC)  # no microseconds: rendered with them anyway


def rows(prefix: str) -> list[dict[str, Any]]:
    """Rows sharing some value objects (as the servers of one create do) and not others."""
    return [
        {
            "uuid": f"{prefix}-{n}",
            "display_name": f"s-{n}",
            "project_id": "p",
            "flavor_id": "f",
            "flavor_name": "m1.tiny",
            "vcpus": 1,
            "memory_mb": 512,
            "root_gb": n,
            "image_id": "i",
            "reservation_id": "r",
            "vm_state": "building",
            "task_state": None if n % 2 else "scheduling",
            "power_state": 0,
            "host": None,
            "node": None,
            "server_metadata": SHARED_METADATA if n < 3 else {"n": str(n)},
            "request_id": "req",
            "availability_zone": None,
            "request_spec": {"num_instances": 5, "same_host": [], "group": None},
            "description": None,
            "key_name": None,
            "key_data": None,
            "user_data": None,
            "security_groups": ("default", "web"),
            "networks": ["net"],
            "block_devices": [],
            "config_drive": n == 4,
            "created_at": SHARED_TIME if n < 3 else datetime(2026, 1, 1, 0, 0, n, 123456, UTC),
            "updated_at": None,
            "launched_at": None,
            "terminated_at": None,
        }
        for n in range(5)
    ]


def stored(db: Database, prefix: str) -> list[dict[str, Any]]:
    with db.begin() as connection:
        found = connection.execute(
            select(INSTANCES).where(INSTANCES.c.uuid.like(f"{prefix}-%")).order_by(INSTANCES.c.uuid)
        )
        return [{k: v for k, v in r._mapping.items() if k not in ("id", "uuid")} for r in found]


def raw(db: Database, prefix: str) -> list[tuple[Any, ...]]:
    """As the database holds them (SQLite keeps text: a different rendering would show)."""
    with db.begin() as connection:
        return [
            tuple(r)[2:]
            for r in connection.exec_driver_sql(
                "SELECT * FROM instances WHERE uuid LIKE ? ORDER BY uuid", (f"{prefix}-%",)
            )
        ]


def test_stored_as_sqlalchemy_stores_them(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.begin() as connection:
            connection.execute(INSTANCES.insert(), rows("core"))
            insert_rows(connection, INSTANCES, rows("bulk"))
        assert stored(db, "bulk") == stored(db, "core")
        assert len(stored(db, "bulk")) == 5
        if database_url.startswith("sqlite"):
            assert raw(db, "bulk") == raw(db, "core")
    finally:
        db.close()


def test_no_rows_is_no_statement(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.begin() as connection:
            insert_rows(connection, INSTANCES, [])
            assert connection.execute(select(INSTANCES)).first() is None
    finally:
        db.close()
