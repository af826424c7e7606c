"""Instance storage on a compute host: a local image cache and per-instance qcow2 disks.

An image is a registered file: a qcow2 or raw disk, or a kernel (+ initrd, in the image's
properties) for direct boot. Compute copies each image once into ``<instances>/_base``, keyed
by image id and checksum and verified against the sha256 recorded at registration; every
instance then gets its own qcow2 overlay (``qemu-img create -b``) sized to the flavor's root
disk, under ``<instances>/<uuid>/``. Removing an instance removes its directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from services.common.domain import DISK_FORMATS
from services.compute.virt.configdrive import build_config_drive
from services.compute.virt.driver import HypervisorError, ImageRef, InvalidBuild
from services.compute.virt.metadata import ConfigDriveContent

log = logging.getLogger(__name__)

COPY_CHUNK = 4 * 1024 * 1024
QEMU_IMG_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class CachedImage:
    """Local copies of an image's files."""

    disk: Path | None = None
    disk_format: str = ""
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""


@dataclass(frozen=True, slots=True)
class InstanceFiles:
    directory: Path
    disk: Path | None
    console_log: Path
    config_drive: Path | None = None
    ephemeral: tuple[Path, ...] = ()


def _sha256_copy(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    temporary = target.with_name(target.name + ".part")
    with source.open("rb") as reader, temporary.open("wb") as writer:
        while chunk := reader.read(COPY_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    os.replace(temporary, target)
    return digest.hexdigest()


def qemu_img(*args: str) -> str:
    try:
        result = subprocess.run(
            ["qemu-img", *args],
            capture_output=True,
            text=True,
            timeout=QEMU_IMG_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise HypervisorError("qemu-img is not installed on this host (qemu-utils)") from exc
    except subprocess.TimeoutExpired as exc:
        raise HypervisorError(f"qemu-img {args[0]} timed out") from exc
    if result.returncode != 0:
        raise HypervisorError(f"qemu-img {args[0]} failed: {result.stderr.strip()}")
    return result.stdout


class ImageCache:
    """``<base>/<image id>-<checksum[:16]>/``: one verified copy per image version."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._virtual_sizes: dict[Path, int] = {}

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _fetch_file(self, directory: Path, name: str, *, location: str, checksum: str) -> Path:
        target = directory / name
        if target.exists():
            return target
        source = Path(location.removeprefix("file://"))
        if not source.is_file():
            raise HypervisorError(f"image file {location} is not readable on this host")
        actual = _sha256_copy(source, target)
        if checksum and actual != checksum:
            target.unlink(missing_ok=True)
            raise InvalidBuild(f"image file {location} has sha256 {actual}, expected {checksum}")
        return target

    def fetch(self, image: ImageRef) -> CachedImage:
        if image.disk_format not in DISK_FORMATS:
            raise InvalidBuild(f"image {image.name}: unsupported disk_format {image.disk_format!r}")
        if not image.location:
            raise InvalidBuild(f"image {image.name} has no file to boot from")
        key = f"{image.id}-{(image.checksum or 'nochecksum')[:16]}"
        directory = self._base / key
        with self._lock(key):
            directory.mkdir(parents=True, exist_ok=True)
            if image.disk_format == "kernel":
                kernel = self._fetch_file(
                    directory, "kernel", location=image.location, checksum=image.checksum
                )
                initrd_location = image.properties.get("initrd_location", "")
                initrd = (
                    self._fetch_file(
                        directory,
                        "initrd",
                        location=initrd_location,
                        checksum=image.properties.get("initrd_checksum", ""),
                    )
                    if initrd_location
                    else None
                )
                return CachedImage(
                    kernel=kernel, initrd=initrd, cmdline=image.properties.get("kernel_cmdline", "")
                )
            disk = self._fetch_file(
                directory, "disk", location=image.location, checksum=image.checksum
            )
            return CachedImage(disk=disk, disk_format=image.disk_format)

    def virtual_size(self, disk: Path, disk_format: str) -> int:
        if disk not in self._virtual_sizes:
            info = json.loads(qemu_img("info", "--output=json", "-f", disk_format, str(disk)))
            self._virtual_sizes[disk] = int(info["virtual-size"])
        return self._virtual_sizes[disk]


class InstanceStorage:
    def __init__(self, instances_path: Path) -> None:
        self.root = instances_path.resolve()
        self.images = ImageCache(self.root / "_base")

    def directory(self, uuid: str) -> Path:
        # uuids come from our own database, but a path is built from them: refuse anything
        # that is not a plain name so that no value can escape the instances directory.
        if not uuid or "/" in uuid or uuid in {".", ".."} or "\x00" in uuid:
            raise InvalidBuild(f"instance uuid {uuid!r} is not a valid directory name")
        return self.root / uuid

    def prepare(self, uuid: str, image: CachedImage | None, root_gb: int) -> InstanceFiles:
        """The instance's directory, console log and root disk (None when there is no image
        file, which only libvirt's test driver accepts)."""
        directory = self.directory(uuid)
        directory.mkdir(parents=True, exist_ok=True)
        console = directory / "console.log"
        console.touch()
        if image is None:
            return InstanceFiles(directory, None, console)
        disk = directory / "disk"
        size = f"{root_gb}G" if root_gb > 0 else ""
        if image.disk is not None:
            if root_gb > 0:
                needed = self.images.virtual_size(image.disk, image.disk_format)
                if needed > root_gb * 1024**3:
                    raise InvalidBuild(
                        f"flavor root disk {root_gb} GiB is smaller than the image "
                        f"({needed / 1024**3:.1f} GiB)"
                    )
            args = ["create", "-q", "-f", "qcow2", "-F", image.disk_format]
            qemu_img(*args, "-b", str(image.disk), str(disk), *([size] if size else []))
        else:
            qemu_img("create", "-q", "-f", "qcow2", str(disk), size or "1G")
        return InstanceFiles(directory, disk, console)

    def extras(
        self, files: InstanceFiles, *, ephemeral_gb: tuple[int, ...],
        config_drive: ConfigDriveContent | None,
    ) -> InstanceFiles:  # fmt: skip
        """Blank qcow2 disks and the config drive, next to the root disk."""
        extra = []
        for index, size in enumerate(ephemeral_gb):
            path = files.directory / f"disk.eph{index}"
            qemu_img("create", "-q", "-f", "qcow2", str(path), f"{size}G")
            extra.append(path)
        drive = None
        if config_drive is not None:
            drive = build_config_drive(config_drive, files.directory / "disk.config")
        return replace(files, config_drive=drive, ephemeral=tuple(extra))

    def remove(self, uuid: str) -> bool:
        directory = self.directory(uuid)
        if not directory.exists():
            return False
        shutil.rmtree(directory, ignore_errors=True)
        return True

    def known_instances(self) -> set[str]:
        if not self.root.exists():
            return set()
        return {p.name for p in self.root.iterdir() if p.is_dir() and p.name != "_base"}
