"""SSH key pairs of a project: imported public keys, with their SHA256 fingerprints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from datetime import datetime

from sqlalchemy import Connection, RowMapping, delete, select

from services.common.db.models import KEYPAIRS
from services.common.records import Keypair as Keypair  # noqa: PLC0414

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MAX_PUBLIC_KEY = 16 * 1024


class InvalidPublicKey(ValueError):
    pass


def parse_public_key(text: str) -> tuple[str, str]:
    """(type, SHA256 fingerprint) of one OpenSSH public key line, checked: the base64 decodes
    and its embedded type matches the declared one."""
    if len(text) > MAX_PUBLIC_KEY:
        raise InvalidPublicKey(f"longer than {MAX_PUBLIC_KEY} characters")
    parts = text.strip().split()
    if len(parts) < 2:
        raise InvalidPublicKey("expected '<type> <base64> [comment]'")
    key_type, blob_text = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        raise InvalidPublicKey(f"unsupported key type {key_type[:40]!r}")
    try:
        blob = base64.b64decode(blob_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPublicKey("the key data is not valid base64") from exc
    if len(blob) < 4:
        raise InvalidPublicKey("the key data is truncated")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length].decode("ascii", "replace") != key_type:
        raise InvalidPublicKey("the key data does not match its type")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return key_type, f"SHA256:{digest}"


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
