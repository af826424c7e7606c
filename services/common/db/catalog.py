"""Flavors and images: looked up by id or by name, as Nova's flavorRef and imageRef."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, and_, bindparam, or_, select, update

from services.common.db.models import FLAVORS, IMAGES
from services.common.domain import Flavor, Image, ImageStatus
from services.common.errors import InvalidArgument


def flavor_from_row(m: RowMapping) -> Flavor:
    return Flavor(m["id"], m["name"], m["vcpus"], m["memory_mb"], m["root_gb"], m["is_public"])


def image_from_row(m: RowMapping) -> Image:
    return Image(
        id=m["id"],
        name=m["name"],
        disk_format=m["disk_format"],
        container_format=m["container_format"],
        location=m["location"],
        checksum=m["checksum"],
        size_bytes=m["size_bytes"],
        status=ImageStatus(m["status"]),
        properties=dict(m["properties"] or {}),
        created_at=m["created_at"],
        owner=m["owner"],
    )


# Built once (the api resolves a flavor and an image for every create).
_FLAVOR_BY_REF = select(FLAVORS).where(
    or_(FLAVORS.c.id == bindparam("ref"), FLAVORS.c.name == bindparam("ref"))
)
_IMAGE_BY_REF = (
    select(IMAGES)
    .where(
        or_(
            IMAGES.c.id == bindparam("ref"),
            and_(IMAGES.c.name == bindparam("ref"), IMAGES.c.status != ImageStatus.DELETED.value),
        )
    )
    .limit(3)  # the image with that id, and two of that name are enough to call it ambiguous
)


def find_flavor(connection: Connection, ref: str) -> Flavor | None:
    """By id, else by name (ids win: Nova resolves flavorRef the same way)."""
    rows = connection.execute(_FLAVOR_BY_REF, {"ref": ref}).all()
    by_id = [r for r in rows if r._mapping["id"] == ref]
    chosen = by_id or rows
    return flavor_from_row(chosen[0]._mapping) if chosen else None


def list_flavors(connection: Connection) -> list[Flavor]:
    rows = connection.execute(select(FLAVORS).order_by(FLAVORS.c.memory_mb, FLAVORS.c.id))
    return [flavor_from_row(r._mapping) for r in rows]


def find_image(connection: Connection, ref: str, *, field: str = "image_ref") -> Image | None:
    """By id, else by name; a name shared by several images is ambiguous (as in Glance)."""
    rows = [r._mapping for r in connection.execute(_IMAGE_BY_REF, {"ref": ref})]
    by_id = [m for m in rows if m["id"] == ref]
    if by_id:
        return image_from_row(by_id[0])
    if len(rows) > 1:
        raise InvalidArgument(field, f"image name {ref!r} is ambiguous: use the image id")
    return image_from_row(rows[0]) if rows else None


_IMAGES_BY_ID = select(IMAGES).where(IMAGES.c.id.in_(bindparam("ids", expanding=True)))


def images_by_id(connection: Connection, ids: set[str]) -> dict[str, Image]:
    if not ids:
        return {}
    rows = connection.execute(_IMAGES_BY_ID, {"ids": sorted(ids)})
    return {r._mapping["id"]: image_from_row(r._mapping) for r in rows}


def add_image(connection: Connection, image: Image, now: datetime) -> None:
    connection.execute(
        IMAGES.insert().values(
            id=image.id,
            name=image.name,
            disk_format=image.disk_format,
            container_format=image.container_format,
            location=image.location,
            checksum=image.checksum,
            size_bytes=image.size_bytes,
            status=image.status.value,
            properties=dict(image.properties),
            created_at=now,
            owner=image.owner,
        )
    )


def images_named(connection: Connection, name: str) -> list[Image]:
    rows = connection.execute(
        select(IMAGES).where(IMAGES.c.name == name, IMAGES.c.status != ImageStatus.DELETED.value)
    )
    return [image_from_row(r._mapping) for r in rows]


def retire_images(connection: Connection, ids: list[str]) -> None:
    """Hide images from name lookups; instances built from them keep their id."""
    if ids:
        connection.execute(
            update(IMAGES).where(IMAGES.c.id.in_(ids)).values(status=ImageStatus.DELETED.value)
        )


def create_flavor(connection: Connection, flavor: Flavor, now: datetime) -> None:
    connection.execute(
        FLAVORS.insert().values(
            id=flavor.id,
            name=flavor.name,
            vcpus=flavor.vcpus,
            memory_mb=flavor.memory_mb,
            root_gb=flavor.root_gb,
            is_public=flavor.is_public,
            created_at=now,
        )
    )


def flavor_taken(connection: Connection, flavor_id: str, name: str) -> str | None:
    """'id' or 'name' when a flavor already has that id or name."""
    row = connection.execute(
        select(FLAVORS.c.id, FLAVORS.c.name).where(
            or_(FLAVORS.c.id == flavor_id, FLAVORS.c.name == name)
        )
    ).first()
    if row is None:
        return None
    return "id" if row[0] == flavor_id else "name"


def delete_flavor(connection: Connection, flavor_id: str) -> bool:
    """Instances keep their own copy of the flavor's sizes, so a plain delete is safe."""
    return connection.execute(FLAVORS.delete().where(FLAVORS.c.id == flavor_id)).rowcount == 1


def list_images(connection: Connection) -> list[Image]:
    rows = connection.execute(
        select(IMAGES)
        .where(IMAGES.c.status != ImageStatus.DELETED.value)
        .order_by(IMAGES.c.name, IMAGES.c.id)
    )
    return [image_from_row(r._mapping) for r in rows]
