"""CreateServers on the in-memory stores: what a batch records, what it casts, and what a
refused create leaves behind (nothing). The same paths against SQLite and PostgreSQL are in
tests/integration (test_api_create_lookup, test_networks, test_security_groups)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

import pytest

from services.api.context import RequestContext
from services.api.create import CreateServerCommand, CreateServerResult, CreateServers, validate
from services.common.domain import Flavor, Image, TaskState, VmState, utcnow
from services.common.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    Unavailable,
)
from services.common.ipam import NetworkFull
from services.common.networking import Network
from services.common.records import Keypair, ServerGroup
from tests.support.fake_stores import FakeNode, FakeTransaction, FakeUnitOfWork
from tests.support.keys import ed25519_public_key

pytestmark = pytest.mark.timeout(10)

T = TypeVar("T")
P1 = RequestContext("p1", "req-1")
UNLIMITED = {"instances": -1, "cores": -1, "ram": -1}


@dataclass(frozen=True)
class Cast:
    uuids: tuple[str, ...]
    reservation_id: str
    request_id: str
    admin_password: str


class RecordingCaster:
    def __init__(self) -> None:
        self.casts: list[Cast] = []

    def cast(
        self,
        instance_uuids: Sequence[str],
        *,
        reservation_id: str,
        request_id: str,
        admin_password: str = "",
    ) -> None:
        self.casts.append(Cast(tuple(instance_uuids), reservation_id, request_id, admin_password))


def seeded() -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    db = uow.db
    db.flavors["1"] = Flavor("1", "m1.tiny", 1, 512, 1)
    db.images["img-1"] = Image("img-1", "cirros", "qcow2", "bare", "/images/cirros", "x", 1,
                               properties={"hw_machine_type": "q35"})  # fmt: skip
    db.images["img-2"] = Image("img-2", "queued", "qcow2", "bare", "/images/q", "x", 1,
                               status="queued")  # fmt: skip
    db.nodes["host-a"] = FakeNode("host-a", "10.0.0.1:1", utcnow(), availability_zone="nova")
    return uow


def command(name: str = "vm", **changes: object) -> CreateServerCommand:
    values: dict[str, object] = {"name": name, "flavor_ref": "m1.tiny", "image_ref": "cirros",
                                 "networks": ("none",)}  # fmt: skip
    values.update(changes)
    return CreateServerCommand(**values)  # type: ignore[arg-type]


async def create_one(
    uow: FakeUnitOfWork,
    cmd: CreateServerCommand,
    *,
    caster: RecordingCaster | None = None,
    quotas: dict[str, int] | None = None,
    context: RequestContext = P1,
) -> CreateServerResult:
    creates = CreateServers(uow, caster or RecordingCaster(),
                            quota_defaults=UNLIMITED if quotas is None else quotas)  # fmt: skip
    creates.start()
    try:
        return await creates(cmd, context)
    finally:
        await creates.close()


async def record_batch(
    uow: FakeUnitOfWork,
    commands: Sequence[CreateServerCommand],
    *,
    caster: RecordingCaster | None = None,
    quotas: dict[str, int] | None = None,
) -> list[CreateServerResult | BaseException]:
    """One batch as the group commit makes it (several creates, one transaction)."""
    creates = CreateServers(uow, caster or RecordingCaster(),
                            quota_defaults=UNLIMITED if quotas is None else quotas)  # fmt: skip
    return await creates._record_batch([validate(c, P1) for c in commands])


async def test_an_accepted_create_is_recorded_in_one_transaction_then_cast() -> None:
    uow = seeded()
    caster = RecordingCaster()
    result = await create_one(uow, command("web", max_count=2, admin_password="pw-123456"),
                              caster=caster)  # fmt: skip
    assert uow.writes == 1
    assert len(result.server_ids) == 2 and result.admin_password == "pw-123456"
    stored = [uow.db.instances[u] for u in result.server_ids]
    assert [i.display_name for i in stored] == ["web-1", "web-2"]
    for instance in stored:
        assert (instance.vm_state, instance.task_state) == (VmState.BUILDING, TaskState.SCHEDULING)
        assert instance.reservation_id == result.reservation_id
        assert instance.image_id == "img-1" and instance.flavor.name == "m1.tiny"
        assert instance.request_spec is not None
        assert instance.request_spec.image_properties == {"hw_machine_type": "q35"}
        assert uow.db.action_of(instance.uuid, "create").request_id == "req-1"
    assert caster.casts == [
        Cast(tuple(result.server_ids), result.reservation_id, "req-1", "pw-123456")
    ]


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"flavor_ref": "m1.huge"}, NotFound, "flavor_ref"),
        ({"image_ref": "nope"}, NotFound, "image_ref"),
        ({"image_ref": "queued"}, InvalidArgument, "image_ref"),
        ({"availability_zone": "elsewhere"}, InvalidArgument, "availability_zone"),
        ({"group": "5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31"}, NotFound, "scheduler_hints.group"),
        ({"key_name": "missing"}, NotFound, "key_name"),
        ({"same_host": ["5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31"]}, NotFound,
         "scheduler_hints.same_host"),
        ({"networks": ["no-such-net"]}, NotFound, "networks"),
        ({"security_groups": ["no-such-group"]}, NotFound, "security_groups"),
    ],
)  # fmt: skip
async def test_a_create_with_a_reference_that_does_not_resolve_records_and_casts_nothing(
    changes: dict[str, object], error: type[DomainError], field: str
) -> None:
    uow = seeded()
    caster = RecordingCaster()
    with pytest.raises(error) as raised:
        await create_one(uow, command(**changes), caster=caster)
    assert getattr(raised.value, "field", None) == field
    assert uow.db.instances == {} and uow.db.actions == [] and uow.db.ports == []
    assert caster.casts == []


async def test_one_refused_create_leaves_the_others_of_its_batch_alone() -> None:
    uow = seeded()
    caster = RecordingCaster()
    results = await record_batch(
        uow, [command("a"), command("b", image_ref="nope"), command("c")], caster=caster
    )
    assert isinstance(results[0], CreateServerResult)
    assert isinstance(results[1], NotFound)
    assert isinstance(results[2], CreateServerResult)
    assert len(uow.db.instances) == 2 and len(caster.casts) == 2
    assert uow.writes == 1


async def test_quota_lowers_max_count_to_what_fits_and_refuses_below_min_count() -> None:
    uow = seeded()
    quotas = {"instances": 3, "cores": -1, "ram": -1}
    first = await create_one(uow, command(min_count=1, max_count=5), quotas=quotas)
    assert len(first.server_ids) == 3
    with pytest.raises(QuotaExceeded):
        await create_one(uow, command(min_count=1), quotas=quotas)
    assert len(uow.db.instances) == 3


async def test_a_project_limit_set_in_the_store_wins_over_the_default() -> None:
    uow = seeded()
    uow.db.quota_limits[("p1", "cores")] = 1
    with pytest.raises(QuotaExceeded):
        await create_one(uow, command(min_count=2), quotas={"instances": 10, "cores": 20,
                                                            "ram": -1})  # fmt: skip


async def test_the_same_client_request_id_gets_the_first_creates_servers_back() -> None:
    uow = seeded()
    caster = RecordingCaster()
    first = await create_one(uow, command(client_request_id="key-1"), caster=caster)
    again = await create_one(uow, command(client_request_id="key-1"), caster=caster)
    assert again.server_ids == first.server_ids
    assert again.reservation_id == first.reservation_id
    assert again.admin_password == ""  # shown once
    assert len(caster.casts) == 1 and len(uow.db.instances) == 1


async def test_the_same_key_twice_in_one_batch_builds_once() -> None:
    uow = seeded()
    caster = RecordingCaster()
    results = await record_batch(
        uow, [command(client_request_id="k"), command(client_request_id="k")], caster=caster
    )
    first, second = results
    assert isinstance(first, CreateServerResult) and isinstance(second, CreateServerResult)
    assert second.server_ids == first.server_ids and second.admin_password == ""
    assert len(caster.casts) == 1


async def test_key_pair_and_group_and_forced_host_are_honoured() -> None:
    uow = seeded()
    key = ed25519_public_key()
    uow.db.keypairs[("p1", "k")] = Keypair("k", "p1", key, "fp", "ssh", utcnow())
    group = ServerGroup("5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31", "g", "p1", "affinity", utcnow())
    uow.db.server_groups[group.uuid] = group
    admin = RequestContext("p1", "req-2", is_admin=True)
    result = await create_one(
        uow,
        command(key_name="k", group="5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31",
                availability_zone="nova:host-a"),
        context=admin,
    )  # fmt: skip
    (instance,) = (uow.db.instances[u] for u in result.server_ids)
    assert instance.key_data == key and instance.config_drive
    assert instance.request_spec is not None
    assert instance.request_spec.force_host == "host-a"
    assert uow.db.group_members == [("5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31", instance.uuid)]


async def test_auto_network_is_made_once_and_each_server_gets_a_port_and_the_default_group() -> (
    None
):
    uow = seeded()
    result = await create_one(uow, command(networks=(), max_count=2))
    (network,) = uow.db.networks.values()
    assert network.is_default and network.project_id == "p1"
    assert sorted(p.instance_uuid for p in uow.db.ports) == sorted(result.server_ids)
    assert len({p.fixed_ip for p in uow.db.ports}) == 2
    assert all(p.fixed_ip in network.cidr for p in uow.db.ports)
    (group,) = uow.db.security_groups.values()
    assert group.name == "default"
    assert sorted(uow.db.memberships) == sorted((u, group.id) for u in result.server_ids)
    await create_one(uow, command(networks=()))
    assert len(uow.db.networks) == 1


def network(uow: FakeUnitOfWork, name: str, cidr: str, last: str) -> Network:
    """A network whose ports get addresses .2 to ``last``."""
    subnet = IPv4Network(cidr)
    made = Network(
        id=f"net-{name}", project_id="p1", name=name, cidr=subnet,
        gateway=subnet.network_address + 1, dns_servers=(),
        allocation_pools=((subnet.network_address + 2, IPv4Address(last)),), shared=False,
        is_default=False, segmentation_id=len(uow.db.networks) + 1, mtu=1500,
        created_at=utcnow(),
    )  # fmt: skip
    uow.db.networks[made.id] = made
    return made


async def test_a_full_network_refuses_its_create_and_gives_its_quota_back_in_the_batch() -> None:
    uow = seeded()
    network(uow, "small", "10.9.0.0/29", "10.9.0.6")  # five addresses
    network(uow, "big", "10.8.0.0/24", "10.8.0.254")
    results = await record_batch(
        uow,
        [
            command("a", networks=["small"], max_count=3),
            command("b", networks=["small"], min_count=3),  # only two addresses are left
            command("c", networks=["big"], min_count=3),  # fits only if b's quota came back
        ],
        quotas={"instances": 6, "cores": -1, "ram": -1},
    )
    assert isinstance(results[0], CreateServerResult)
    assert isinstance(results[1], NetworkFull) and results[1].field == "networks"
    assert isinstance(results[2], CreateServerResult)
    assert len(uow.db.instances) == 6
    on_small = [p for p in uow.db.ports if p.network_id == "net-small"]
    assert len(on_small) == 3  # b kept none of the addresses it took


async def test_a_failed_transaction_casts_nothing_and_fails_every_create_of_the_batch() -> None:
    class Broken(FakeUnitOfWork):
        async def write(self, work: Callable[[FakeTransaction], T]) -> T:
            raise Unavailable("database unavailable: gone")

    caster = RecordingCaster()
    uow = Broken(seeded().db)
    with pytest.raises(Unavailable):
        await create_one(uow, command(), caster=caster)
    assert caster.casts == [] and uow.db.instances == {}


def test_fake_rollback_keeps_nothing_of_work_that_raised() -> None:
    """The fake unit of work must behave as a transaction, or the tests above prove little."""
    uow = seeded()

    def work(tx: FakeTransaction) -> None:
        tx.networks.insert_ports([], utcnow())
        uow.db.quota_limits[("p1", "x")] = 1
        raise NotFound("server", "x")

    with pytest.raises(NotFound):
        asyncio.run(uow.write(work))
    assert ("p1", "x") not in uow.db.quota_limits
