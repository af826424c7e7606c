"""File helpers shared by the services and the operator tools."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 4 * 1024 * 1024


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex, read in chunks (images can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
