"""Key pairs, flavors, images and quotas use cases on the in-memory stores."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.api.catalog import FlavorUseCases, ImageUseCases
from services.api.compute_services import ComputeServiceUseCases
from services.api.context import RequestContext
from services.api.groups import ServerGroupUseCases
from services.api.keypairs import KeypairUseCases
from services.api.quotas import QuotaUseCases
from services.common.domain import ComputeNodeReport, GroupPolicy, Image, VmState
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.conductor.nodes import ComputeNodes
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


async def test_server_groups_are_made_seen_by_their_project_only_and_deleted() -> None:
    uow = FakeUnitOfWork()
    groups = ServerGroupUseCases(uow)
    # an unknown policy never reaches the use case: the servicer parses it into the enum
    with pytest.raises(InvalidArgument):
        await groups.create("", GroupPolicy.ANTI_AFFINITY, P1)
    made = await groups.create("g", GroupPolicy.ANTI_AFFINITY, P1)
    member = make_instance(project_id="p1")
    uow.db.add(member)
    uow.db.group_members.append((made.uuid, member.uuid))
    assert (await groups.get(made.uuid, P1)).members == (member.uuid,)
    with pytest.raises(NotFound):
        await groups.get(made.uuid, P2)
    assert [g.uuid for g in await groups.list_groups(ADMIN)] == [made.uuid]
    await groups.delete(made.uuid, P1)
    assert await groups.list_groups(P1) == []


async def test_compute_services_are_listed_and_disabled_with_a_reason_by_admins() -> None:
    uow = FakeUnitOfWork()
    nodes = ComputeNodes(uow)
    report = ComputeNodeReport("h1", "h1", "10.0.0.1:7000", 8, 8192, 80, "QEMU", "x86_64", "nova")
    await nodes.report(report)
    services = ComputeServiceUseCases(uow, service_down_time=timedelta(seconds=60))
    with pytest.raises(PermissionDenied):
        await services.list_services(P1)
    (view,) = await services.list_services(ADMIN)
    assert view.state.host == "h1" and view.state.is_up and view.state.enabled
    disabled = await services.set_status(ADMIN, "h1", enabled=False, reason="maintenance")
    assert not disabled.state.enabled and disabled.disabled_reason == "maintenance"
    with pytest.raises(InvalidArgument):
        await services.set_status(ADMIN, "h1", enabled=True, reason="why")
    with pytest.raises(NotFound):
        await services.set_status(ADMIN, "h9", enabled=False, reason="gone")


async def test_a_host_is_told_the_live_instances_placed_on_it() -> None:
    uow = FakeUnitOfWork()
    here = make_instance(host="h1", vm_state=VmState.ACTIVE, task_state=None)
    gone = make_instance(host="h1", vm_state=VmState.DELETED, task_state=None)
    uow.db.add(here, gone, make_instance(host="h2"))
    assert [i.uuid for i in await ComputeNodes(uow).host_instances("h1")] == [here.uuid]
