"""SSH key pairs of a project: imported public keys, with their SHA256 fingerprints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, delete, select

from services.common import public_keys
from services.common.db.models import KEYPAIRS
from services.common.records import Keypair as Keypair  # noqa: PLC0414

# The key checks are plain functions, here for this module's callers.
KEY_TYPES = public_keys.KEY_TYPES
MAX_PUBLIC_KEY = public_keys.MAX_PUBLIC_KEY
InvalidPublicKey = public_keys.InvalidPublicKey
parse_public_key = public_keys.parse_public_key


def _keypair(m: RowMapping) -> Keypair:
    return Keypair(
        m["name"], m["project_id"], m["public_key"], m["fingerprint"], m["type"], m["created_at"]
    )


def add(
    connection: Connection, *, project_id: str, name: str, public_key: str, now: datetime
) -> Keypair:
    key_type, fingerprint = parse_public_key(public_key)
    keypair = Keypair(name, project_id, public_key.strip(), fingerprint, key_type, now)
    connection.execute(
        KEYPAIRS.insert().values(
            project_id=project_id,
            name=name,
            public_key=keypair.public_key,
            fingerprint=fingerprint,
            type=key_type,
            created_at=now,
        )
    )
    return keypair


def get(connection: Connection, *, project_id: str, name: str) -> Keypair | None:
    row = connection.execute(
        select(KEYPAIRS).where(KEYPAIRS.c.project_id == project_id, KEYPAIRS.c.name == name)
    ).first()
    return None if row is None else _keypair(row._mapping)


def list_keypairs(connection: Connection, *, project_id: str) -> list[Keypair]:
    rows = connection.execute(
        select(KEYPAIRS).where(KEYPAIRS.c.project_id == project_id).order_by(KEYPAIRS.c.name)
    )
    return [_keypair(r._mapping) for r in rows]


def remove(connection: Connection, *, project_id: str, name: str) -> bool:
    result = connection.execute(
        delete(KEYPAIRS).where(KEYPAIRS.c.project_id == project_id, KEYPAIRS.c.name == name)
    )
    return result.rowcount == 1
