"""Key pairs, flavors, images and quotas use cases on the in-memory stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.api.catalog import FlavorUseCases, ImageUseCases
from services.api.context import RequestContext
from services.api.keypairs import KeypairUseCases
from services.api.quotas import QuotaUseCases
from services.common.domain import Image
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from tests.support.fake_stores import FakeUnitOfWork, make_instance
from tests.support.keys import ed25519_public_key

pytestmark = pytest.mark.timeout(10)

P1 = RequestContext("p1", "req-1")
P2 = RequestContext("p2", "req-2")
ADMIN = RequestContext("admin", "req-3", is_admin=True)


async def test_key_pairs_are_imported_once_per_project_and_deleted() -> None:
    uow = FakeUnitOfWork()
    keys = KeypairUseCases(uow)
    made = await keys.import_keypair(P1, "laptop", ed25519_public_key())
    assert made.name == "laptop" and made.fingerprint
    with pytest.raises(AlreadyExists):
        await keys.import_keypair(P1, "laptop", ed25519_public_key())
    await keys.import_keypair(P2, "laptop", ed25519_public_key())  # another project's: fine
    assert [k.name for k in await keys.list_keypairs(P1)] == ["laptop"]
    assert (await keys.get(P1, "laptop")).public_key == made.public_key
    await keys.delete(P1, "laptop")
    with pytest.raises(NotFound):
        await keys.get(P1, "laptop")
    with pytest.raises(NotFound):
        await keys.delete(P1, "laptop")
    assert [k.project_id for k in uow.db.keypairs.values()] == ["p2"]


async def test_a_key_that_does_not_parse_is_refused_before_any_transaction() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(InvalidArgument) as raised:
        await KeypairUseCases(uow).import_keypair(P1, "bad", "ssh-rsa not-base64!")
    assert raised.value.field == "public_key"
    assert uow.writes == 0


async def test_flavors_are_admin_made_with_a_unique_id_and_name() -> None:
    uow = FakeUnitOfWork()
    flavors = FlavorUseCases(uow)
    with pytest.raises(PermissionDenied):
        await flavors.create(P1, name="m1.small", flavor_id="2", vcpus=1, ram=2048, disk=20)
    await flavors.create(ADMIN, name="m1.small", flavor_id="2", vcpus=1, ram=2048, disk=20)
    await flavors.create(ADMIN, name="m1.tiny", flavor_id="1", vcpus=1, ram=512, disk=1)
    with pytest.raises(AlreadyExists) as raised:
        await flavors.create(ADMIN, name="m1.small", flavor_id="9", vcpus=1, ram=1, disk=1)
    assert raised.value.field == "name"
    assert [f.name for f in await flavors.list_flavors()] == ["m1.tiny", "m1.small"]
    assert (await flavors.get("m1.small")).id == "2"
    await flavors.delete(ADMIN, "2")
    with pytest.raises(NotFound):
        await flavors.get("2")


async def test_a_deleted_image_is_gone_by_name_and_only_its_owner_or_an_admin_deletes(
    tmp_path: Path,
) -> None:
    uow = FakeUnitOfWork()
    uow.db.images["img-1"] = Image("img-1", "cirros", "qcow2", "bare", "/x", "c", 1, owner="p1")
    images = ImageUseCases(uow, tmp_path)
    with pytest.raises(PermissionDenied):
        await images.delete(P2, "cirros")
    await images.delete(P1, "cirros")
    with pytest.raises(NotFound):
        await images.get("cirros")
    assert await images.list_images() == []


async def test_quotas_are_read_with_usage_and_set_by_an_admin() -> None:
    uow = FakeUnitOfWork()
    uow.db.add(make_instance(project_id="p1"), make_instance(project_id="p1"))
    quotas = QuotaUseCases(uow, {"instances": 10, "cores": 20, "ram": 51200})
    view = await quotas.get(P1, "")
    assert view.limits["instances"] == 10 and view.usage.instances == 2
    assert view.usage.cores == 2 and view.usage.ram == 1024
    with pytest.raises(PermissionDenied):
        await quotas.set(P1, "p1", {"instances": 50})
    with pytest.raises(InvalidArgument):
        await quotas.set(ADMIN, "p1", {"instances": -2})
    changed = await quotas.set(ADMIN, "p1", {"instances": 3})
    assert changed.limits["instances"] == 3 and changed.limits["cores"] == 20
    with pytest.raises(PermissionDenied):
        await quotas.get(P2, "p1")
