"""API tokens: created once (the secret is shown once), stored as SHA-256, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, RowMapping, select, update

from services.common.db.models import API_TOKENS

TOKEN_PREFIX = "ngt_"
# reader: read-only calls (Get*, List*, Watch*), as Nova's project reader
ROLES = ("member", "admin", "reader")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    project_id: str
    roles: tuple[str, ...]
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    connection: Connection,
    *,
    project_id: str,
    roles: Sequence[str],
    description: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> tuple[TokenRecord, str]:
    """A new token; returns the record and the secret (never stored)."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"roles must be among {ROLES}, got {list(roles)}")
    secret = new_secret()
    record = TokenRecord(
        str(uuid.uuid4()), project_id, tuple(sorted(set(roles))), description, now, expires_at,
        None,
    )  # fmt: skip
    connection.execute(
        API_TOKENS.insert().values(
            id=record.id,
            token_hash=hash_token(secret),
            project_id=project_id,
            roles=",".join(record.roles),
            description=description,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
        )
    )
    return record, secret


def _record(row: RowMapping) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        project_id=row["project_id"],
        roles=tuple(r for r in row["roles"].split(",") if r),
        description=row["description"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def find_by_secret(connection: Connection, secret: str) -> TokenRecord | None:
    row = connection.execute(
        select(API_TOKENS).where(API_TOKENS.c.token_hash == hash_token(secret))
    ).first()
    return None if row is None else _record(row._mapping)


def list_tokens(connection: Connection) -> list[TokenRecord]:
    rows = connection.execute(select(API_TOKENS).order_by(API_TOKENS.c.created_at))
    return [_record(r._mapping) for r in rows]


def revoke(connection: Connection, token_id: str, now: datetime) -> bool:
    result = connection.execute(
        update(API_TOKENS)
        .where(API_TOKENS.c.id == token_id, API_TOKENS.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1
