"""Flavor and image references resolve as Nova and Glance resolve them: by id first, then by
name; an image name two live images share is ambiguous; retired images keep their id only.
Real SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from services.common.db import catalog
from services.common.db.engine import Database
from services.common.domain import Flavor, Image, utcnow
from services.common.errors import InvalidArgument

pytestmark = pytest.mark.timeout(60)


def image(image_id: str, name: str) -> Image:
    return Image(image_id, name, "qcow2", "bare", f"/images/{image_id}", "c", 1)


def test_image_references(db: Database) -> None:
    with db.begin() as c:
        for image_id, name in (("img-1", "cirros"), ("img-2", "cirros"), ("img-3", "img-1"),
                               ("img-4", "debian"), ("img-5", "debian")):  # fmt: skip
            catalog.add_image(c, image(image_id, name), utcnow())
        catalog.retire_images(c, ["img-5"])
    with db.begin_read() as c:
        # an id wins over another image's name that happens to equal it
        assert catalog.find_image(c, "img-1").id == "img-1"  # type: ignore[union-attr]
        # a retired image is found by id (its instances keep it), not by name
        assert catalog.find_image(c, "img-5").id == "img-5"  # type: ignore[union-attr]
        assert catalog.find_image(c, "debian").id == "img-4"  # type: ignore[union-attr]
        assert catalog.find_image(c, "nothing") is None
        with pytest.raises(InvalidArgument) as raised:
            catalog.find_image(c, "cirros")
    assert raised.value.field == "image_ref"
    assert "ambiguous" in str(raised.value)


def test_flavor_references(db: Database) -> None:
    with db.begin() as c:
        catalog.create_flavor(c, Flavor("f-100", "m1.tiny-copy", 1, 256, 1), utcnow())
        catalog.create_flavor(c, Flavor("f-101", "f-100", 2, 512, 1), utcnow())
    with db.begin_read() as c:
        assert catalog.find_flavor(c, "f-100").name == "m1.tiny-copy"  # type: ignore[union-attr]
        assert catalog.find_flavor(c, "m1.tiny-copy").id == "f-100"  # type: ignore[union-attr]
        assert catalog.find_flavor(c, "f-101").vcpus == 2  # type: ignore[union-attr]
        assert catalog.find_flavor(c, "nothing") is None
