"""Flavors and images: the catalogue servers are built from."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext, require_admin
from services.common.domain import DISK_FORMATS, Flavor, Image, ImageStatus, utcnow
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from services.common.files import image_record
from services.common.stores import CatalogStore, UnitOfWork

MAX_VCPUS = 1024
MAX_RAM_MB = 16 * 1024 * 1024
MAX_DISK_GB = 1024 * 1024
FLAVOR_ID = re.compile(r"^[A-Za-z0-9._-]{1,36}$")


def _bounded(field: str, value: int, *, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}, got {value}")
    return value


class CatalogTx(Protocol):
    @property
    def catalog(self) -> CatalogStore: ...


class FlavorUseCases:
    def __init__(self, uow: UnitOfWork[CatalogTx]) -> None:
        self._uow = uow

    async def create(
        self, context: RequestContext, *, name: str, flavor_id: str, vcpus: int, ram: int,
        disk: int,
    ) -> Flavor:  # fmt: skip
        require_admin(context, "creating flavors")
        flavor = Flavor(
            id=flavor_id or str(uuid.uuid4()),
            name=validation.check_name("name", name),
            vcpus=_bounded("vcpus", vcpus, low=1, high=MAX_VCPUS),
            memory_mb=_bounded("ram", ram, low=1, high=MAX_RAM_MB),
            root_gb=_bounded("disk", disk, low=0, high=MAX_DISK_GB),
        )
        if not FLAVOR_ID.match(flavor.id):
            raise InvalidArgument("id", "use 1 to 36 letters, digits, '.', '_' or '-'")

        def work(tx: CatalogTx) -> None:
            taken = tx.catalog.flavor_taken(flavor.id, flavor.name)
            if taken is not None:
                ref = flavor.id if taken == "id" else flavor.name
                raise AlreadyExists(f"{taken}: a flavor {ref!r} exists already", field=taken)
            tx.catalog.create_flavor(flavor, utcnow())

        await self._uow.write(work)
        return flavor

    async def get(self, ref: str) -> Flavor:
        ref = validation.check_ref("id", ref)
        found = await self._uow.read(lambda tx: tx.catalog.find_flavor(ref))
        if found is None:
            raise NotFound("flavor", ref, field="id")
        return found

    async def list_flavors(self) -> list[Flavor]:
        return await self._uow.read(lambda tx: tx.catalog.list_flavors())

    async def delete(self, context: RequestContext, flavor_id: str) -> None:
        require_admin(context, "deleting flavors")
        flavor_id = validation.check_ref("id", flavor_id)
        if not await self._uow.write(lambda tx: tx.catalog.delete_flavor(flavor_id)):
            raise NotFound("flavor", flavor_id, field="id")


class ImageUseCases:
    def __init__(self, uow: UnitOfWork[CatalogTx], store: Path) -> None:
        self._uow = uow
        self._store = store.resolve()

    def _in_store(self, field: str, relative: str) -> Path:
        """A regular file inside the image store; nothing else can be read this way."""
        if not relative or "\x00" in relative or len(relative) > 1024:
            raise InvalidArgument(field, "must be a path relative to the image store")
        candidate = (self._store / relative).resolve()
        if not candidate.is_relative_to(self._store) or os.path.isabs(relative):
            raise InvalidArgument(field, "must be a path inside the image store")
        if not candidate.is_file():
            raise NotFound("image file", relative, field=field)
        return candidate

    async def register(
        self, context: RequestContext, *, name: str, file: str, disk_format: str,
        initrd_file: str, kernel_cmdline: str, properties: dict[str, str],
    ) -> Image:  # fmt: skip
        name = validation.check_name("name", name)
        if disk_format not in DISK_FORMATS:
            raise InvalidArgument("disk_format", f"must be one of {', '.join(DISK_FORMATS)}")
        props = validation.check_metadata(properties, field="properties")
        path = self._in_store("file", file)
        initrd = None
        if disk_format == "kernel":
            if initrd_file:
                initrd = self._in_store("initrd_file", initrd_file)
        elif initrd_file or kernel_cmdline:
            raise InvalidArgument("initrd_file", "only kernel images take an initrd or cmdline")
        image = await asyncio.to_thread(
            image_record, name, path, disk_format=disk_format, initrd=initrd,
            cmdline=kernel_cmdline[:1024], properties=props, owner=context.project_id,
        )  # fmt: skip
        await self._uow.write(lambda tx: tx.catalog.add_image(image, utcnow()))
        return await self.get(image.id)

    async def get(self, ref: str) -> Image:
        ref = validation.check_ref("id", ref)
        found = await self._uow.read(lambda tx: tx.catalog.find_image(ref, field="id"))
        if found is None or found.status is ImageStatus.DELETED:
            raise NotFound("image", ref, field="id")
        return found

    async def list_images(self) -> list[Image]:
        return await self._uow.read(lambda tx: tx.catalog.list_images())

    async def delete(self, context: RequestContext, ref: str) -> None:
        image = await self.get(ref)
        if not context.is_admin and image.owner != context.project_id:
            raise PermissionDenied("only the image's owner or an admin may delete it")
        await self._uow.write(lambda tx: tx.catalog.retire_images([image.id]))
