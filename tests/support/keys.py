"""Well-formed OpenSSH public keys for tests (random key material: nobody holds the private
half, which is fine for a key that is only recorded and handed to a guest)."""

from __future__ import annotations

import base64
import os
import struct


def ed25519_public_key(comment: str = "test@nova-grpc") -> str:
    key_type = b"ssh-ed25519"
    blob = struct.pack(">I", len(key_type)) + key_type + struct.pack(">I", 32) + os.urandom(32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"
