"""File helpers shared by the services and the operator tools."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from pathlib import Path

from services.common.domain import Image

CHUNK = 4 * 1024 * 1024


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex, read in chunks (images can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def image_record(
    name: str,
    file: Path,
    *,
    disk_format: str,
    initrd: Path | None,
    cmdline: str,
    properties: Mapping[str, str],
    owner: str | None = None,
) -> Image:
    """A new image for files the caller has checked (absolute paths): size and SHA-256
    measured now; a kernel image carries its initrd and command line as properties."""
    props = dict(properties)
    if disk_format == "kernel":
        if initrd is not None:
            props["initrd_location"] = str(initrd)
            props["initrd_checksum"] = sha256_of(initrd)
        props["kernel_cmdline"] = cmdline
    return Image(
        id=str(uuid.uuid4()), name=name, disk_format=disk_format, container_format="bare",
        location=str(file), checksum=sha256_of(file), size_bytes=file.stat().st_size,
        properties=props, owner=owner,
    )  # fmt: skip
