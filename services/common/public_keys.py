"""OpenSSH public keys as a key pair takes them: the types accepted, and the check that gives
a key's type and SHA256 fingerprint (no database: the keypairs use case checks a key before
its transaction)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

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
