"""CreateServer: validate, resolve, record durably, cast.

Creates are group-committed: concurrent CreateServer calls share one transaction (natural
batching), and the casts to the conductor are sent by the batch after its commit, so a client
that hangs up mid-call can never leave recorded instances that nobody builds.
"""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext, require_admin
from services.api.keypairs import check_key_name
from services.api.ports import NicRequest, PortAllocator, check_nics
from services.api.quotas import QuotaTracker
from services.api.security_groups import SecurityGroupResolver
from services.common.batching import Batcher
from services.common.domain import (
    Flavor,
    Image,
    Instance,
    PowerState,
    TaskState,
    VmState,
    utcnow,
)
from services.common.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common.instance_actions import ActionName
from services.common.records import QUOTA_DEFAULTS, NewAction
from services.common.request_spec import StoredSpec
from services.common.stores import (
    ActionStore,
    CatalogStore,
    IdempotencyStore,
    InstanceStore,
    KeypairStore,
    NetworkStore,
    NodeStore,
    QuotaStore,
    SecurityGroupStore,
    ServerGroupStore,
    UnitOfWork,
)

log = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class CreateServerCommand:
    name: str
    flavor_ref: str
    image_ref: str
    min_count: int | None = None
    max_count: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    availability_zone: str = ""
    group: str = ""
    same_host: Sequence[str] = ()
    different_host: Sequence[str] = ()
    description: str = ""
    key_name: str = ""
    user_data: str = ""
    admin_password: str = ""
    networks: Sequence[str] = ()
    security_groups: Sequence[str] = ()
    tags: Sequence[str] = ()
    client_request_id: str = ""
    # (source_type, destination_type, size in GiB)
    block_devices: Sequence[tuple[str, str, int]] = ()
    # Structured NIC requests: (network name or id, fixed IPv4 or "").
    nics: Sequence[tuple[str, str]] = ()
    # Ask for a config drive even without user data or a key (as Nova's config_drive).
    config_drive: bool = False


@dataclass(frozen=True, slots=True)
class CreateServerResult:
    server_ids: list[str]
    reservation_id: str
    # Shown once; empty when an idempotent retry returns an earlier create's servers.
    admin_password: str = ""


class CreateTx(Protocol):
    """The stores one batch of creates reads and writes, in its one transaction."""

    @property
    def instances(self) -> InstanceStore: ...
    @property
    def nodes(self) -> NodeStore: ...
    @property
    def actions(self) -> ActionStore: ...
    @property
    def catalog(self) -> CatalogStore: ...
    @property
    def server_groups(self) -> ServerGroupStore: ...
    @property
    def keypairs(self) -> KeypairStore: ...
    @property
    def quotas(self) -> QuotaStore: ...
    @property
    def idempotency(self) -> IdempotencyStore: ...
    @property
    def networks(self) -> NetworkStore: ...
    @property
    def security_groups(self) -> SecurityGroupStore: ...


class BuildCaster(Protocol):
    """The one-way path to the conductor (a client stream in production)."""

    def cast(
        self,
        instance_uuids: Sequence[str],
        *,
        reservation_id: str,
        request_id: str,
        admin_password: str = "",
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class _ValidCreate:
    name: str
    flavor_ref: str
    image_ref: str
    min_count: int
    max_count: int
    metadata: dict[str, str]
    zone: str | None
    force_host: str | None
    force_node: str | None
    group: str | None
    same_host: tuple[str, ...]
    different_host: tuple[str, ...]
    context: RequestContext
    description: str | None
    key_name: str | None
    user_data: str | None
    admin_password: str
    networks: tuple[str, ...]
    security_groups: tuple[str, ...]
    tags: tuple[str, ...]
    client_request_id: str | None
    ephemeral_gb: tuple[int, ...]
    nics: tuple[NicRequest, ...]
    config_drive: bool


def _servers(create: _ValidCreate) -> int:
    return create.max_count


def _project(create: _ValidCreate) -> str:
    return create.context.project_id


def new_reservation_id() -> str:
    # One read of the system's randomness, not ten (secrets.choice per character showed up at
    # 5% of the api's CPU in a profile); base32 keeps Nova's lowercase-and-digits look.
    return "r-" + base64.b32encode(secrets.token_bytes(7)).decode()[:10].lower()


def display_names(name: str, count: int) -> list[str]:
    """Nova's multi_instance_display_name_template: ``name-1``, ``name-2``, ... for count > 1."""
    return [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]


def validate(command: CreateServerCommand, context: RequestContext) -> _ValidCreate:
    """Everything that needs no database: each rejection names its field."""
    min_count, max_count = validation.check_counts(command.min_count, command.max_count)
    zone, force_host, force_node = validation.check_availability_zone(command.availability_zone)
    if force_host:
        require_admin(context, "availability_zone: forcing a host (zone:host)")
    nics = check_nics(command.networks, command.nics, max_count=max_count)
    return _ValidCreate(
        name=validation.check_name("name", command.name),
        flavor_ref=validation.check_ref("flavor_ref", command.flavor_ref),
        image_ref=validation.check_ref("image_ref", command.image_ref),
        min_count=min_count,
        max_count=max_count,
        metadata=validation.check_metadata(command.metadata),
        zone=zone,
        force_host=force_host,
        force_node=force_node,
        group=validation.check_uuid_ref("scheduler_hints.group", command.group)
        if command.group
        else None,
        same_host=validation.check_server_list(
            "scheduler_hints.same_host", list(command.same_host)
        ),
        different_host=validation.check_server_list(
            "scheduler_hints.different_host", list(command.different_host)
        ),
        context=context,
        description=validation.check_name("description", command.description)
        if command.description
        else None,
        key_name=check_key_name("key_name", command.key_name) if command.key_name else None,
        user_data=validation.check_user_data(command.user_data),
        # Generated when absent (as Nova); it travels with the cast and is never stored.
        admin_password=validation.check_admin_password(command.admin_password)
        or secrets.token_urlsafe(12),
        networks=tuple(nic.network for nic in nics),
        security_groups=validation.check_security_groups(list(command.security_groups)),
        tags=validation.check_tags(list(command.tags)),
        client_request_id=validation.check_client_request_id(command.client_request_id),
        ephemeral_gb=validation.check_block_devices(list(command.block_devices)),
        nics=nics,
        config_drive=command.config_drive,
    )


class CreateServers:
    def __init__(
        self,
        uow: UnitOfWork[CreateTx],
        caster: BuildCaster,
        *,
        quota_defaults: dict[str, int] | None = None,
        batch_servers: int = 64,
    ) -> None:
        """``batch_servers``: the most servers one transaction of creates makes. SQLite has
        one writer, so a transaction is what every other create waits for: projects take
        turns in it (one create each per turn) up to this many servers, and a larger create
        goes alone, whole (atomic), in a transaction of its own."""
        self._uow = uow
        self._caster = caster
        self._quota_defaults = dict(QUOTA_DEFAULTS if quota_defaults is None else quota_defaults)
        self._batcher: Batcher[_ValidCreate, CreateServerResult] = Batcher(
            self._record_batch,
            max_batch=batch_servers,
            name="create-servers",
            weigh=_servers,
            key=_project,
        )

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    async def __call__(
        self, command: CreateServerCommand, context: RequestContext
    ) -> CreateServerResult:
        return await self._batcher.submit(validate(command, context))

    async def _record_batch(
        self, creates: Sequence[_ValidCreate]
    ) -> list[CreateServerResult | BaseException]:
        results, casts = await self._uow.write(lambda tx: self._record(tx, creates))
        for result, create in casts:
            log.info(
                "accepted %d servers, reservation %s",
                len(result.server_ids),
                result.reservation_id,
                extra={"request_id": create.context.request_id},
            )
            self._caster.cast(
                result.server_ids,
                reservation_id=result.reservation_id,
                request_id=create.context.request_id,
                admin_password=create.admin_password,
            )
        return results

    def _record(
        self, tx: CreateTx, creates: Sequence[_ValidCreate]
    ) -> tuple[
        list[CreateServerResult | BaseException], list[tuple[CreateServerResult, _ValidCreate]]
    ]:
        """Resolve references and insert every accepted create in this one transaction.
        A create that fails resolution writes nothing; the others are unaffected."""
        lookup = _Lookup(tx)
        quota = QuotaTracker(tx.quotas, self._quota_defaults)
        earlier = _EarlierCreates(tx.idempotency)
        ports = PortAllocator(tx.networks)
        security_groups = SecurityGroupResolver(tx.security_groups)
        results: list[CreateServerResult | BaseException] = []
        accepted: list[tuple[CreateServerResult, _ValidCreate]] = []
        rows: list[Instance] = []
        members: list[tuple[str, list[str]]] = []
        now = utcnow()
        for create in creates:
            try:
                previous = earlier.find(create, now)
                if previous is not None:
                    results.append(previous)
                    continue
                flavor = lookup.flavor(create.flavor_ref)
                image = lookup.image(create.image_ref)
                key_data = lookup.check_placement(create)
                networks = ports.resolve(create.nics, create.context)
                sg = security_groups.resolve(create.security_groups, create.context)
                count = quota.allow(
                    create.context.project_id, count=create.max_count, vcpus=flavor.vcpus,
                    ram=flavor.memory_mb, minimum=create.min_count,
                )  # fmt: skip
            except DomainError as exc:
                results.append(exc)
                continue
            new = _new_instances(create, flavor, image, now=now, count=count, key_data=key_data,
                                 security_groups=tuple(g.name for g in sg))  # fmt: skip
            try:
                new_ports = ports.allocate([i.uuid for i in new], create.nics, networks)
            except DomainError as exc:  # a full network, a fixed IP taken: nothing is kept
                quota.give_back(create.context.project_id, count=count, vcpus=flavor.vcpus,
                                ram=flavor.memory_mb)  # fmt: skip
                results.append(exc)
                continue
            result = CreateServerResult(
                [i.uuid for i in new], new[0].reservation_id, create.admin_password
            )
            if not earlier.claim(create, result, now):
                # Another create holds the key: answer with its servers, never with ids that
                # were not stored.
                winner = earlier.find(create, now)
                results.append(
                    winner
                    if winner is not None
                    else Unavailable("client_request_id: a concurrent create holds it; retry")
                )
                continue
            rows.extend(new)
            ports.keep(new_ports)
            security_groups.keep([i.uuid for i in new], sg)
            if create.group:
                members.append((create.group, [i.uuid for i in new]))
            results.append(result)
            accepted.append((result, create))
        tx.instances.insert(rows)
        ports.insert(now)
        security_groups.insert()
        for group_uuid, uuids in members:
            tx.server_groups.add_members(group_uuid, uuids, now)
        tx.actions.start(
            [NewAction(i.uuid, ActionName.CREATE, i.request_id, i.project_id) for i in rows],
            now,
        )
        return results, accepted


class _EarlierCreates:
    """client_request_id idempotency: the same id from the same project within 24 h gets the
    first create's servers back. The key is written before the instances, in the same
    transaction, so two racing creates with one key cannot both build (the second waits on the
    unique key and then finds the first)."""

    def __init__(self, store: IdempotencyStore) -> None:
        self._store = store
        self._in_batch: dict[tuple[str, str], CreateServerResult] = {}

    def find(self, create: _ValidCreate, now: datetime) -> CreateServerResult | None:
        if create.client_request_id is None:
            return None
        key = (create.context.project_id, create.client_request_id)
        if key in self._in_batch:
            return replace(self._in_batch[key], admin_password="")
        found = self._store.find(*key, since=now - IDEMPOTENCY_WINDOW)
        if found is None:
            return None
        return CreateServerResult(list(found.server_ids), found.reservation_id)

    def claim(self, create: _ValidCreate, result: CreateServerResult, now: datetime) -> bool:
        if create.client_request_id is None:
            return True
        key = (create.context.project_id, create.client_request_id)
        claimed = self._store.claim(
            *key, reservation_id=result.reservation_id,
            server_ids=result.server_ids, now=now, expired_before=now - IDEMPOTENCY_WINDOW,
        )  # fmt: skip
        if claimed:
            self._in_batch[key] = result
        return claimed


class _Lookup:
    """References resolved for one batch: each flavor, image, zone list, forced host, group
    and key pair read once (a batch often repeats them, and it creates none of them)."""

    def __init__(self, tx: CreateTx) -> None:
        self._tx = tx
        self._flavors: dict[str, Flavor | None] = {}
        self._images: dict[str, Image | None] = {}
        self._zones: set[str] | None = None
        self._hosts: dict[str, bool] = {}
        # Keyed by the caller's scope too: a group visible to an admin may not be to a project.
        self._groups: dict[tuple[str | None, str], bool] = {}
        self._public_keys: dict[tuple[str, str], str | None] = {}

    def flavor(self, ref: str) -> Flavor:
        if ref not in self._flavors:
            self._flavors[ref] = self._tx.catalog.find_flavor(ref)
        found = self._flavors[ref]
        if found is None:
            raise NotFound("flavor", ref, field="flavor_ref")
        return found

    def image(self, ref: str) -> Image:
        if ref not in self._images:
            self._images[ref] = self._tx.catalog.find_image(ref)
        found = self._images[ref]
        if found is None:
            raise NotFound("image", ref, field="image_ref")
        if found.status != "active":
            raise InvalidArgument("image_ref", f"image {found.name!r} is {found.status}")
        return found

    def check_placement(self, create: _ValidCreate) -> str | None:
        """Zone, forced host, group, hinted servers and key pair exist; returns the key's
        public key (copied onto the instances, as Nova does)."""
        if create.zone is not None:
            if self._zones is None:
                self._zones = self._tx.nodes.zones()
            if create.zone not in self._zones:
                raise InvalidArgument(
                    "availability_zone", f"zone {create.zone!r} has no compute hosts"
                )
        if create.force_host is not None and not self._host_exists(create.force_host):
            raise NotFound("compute host", create.force_host, field="availability_zone")
        scope = create.context.scope
        if create.group is not None and not self._group_visible(create.group, scope):
            raise NotFound("server group", create.group, field="scheduler_hints.group")
        for hint, servers in (("same_host", create.same_host),
                              ("different_host", create.different_host)):  # fmt: skip
            self._check_servers(f"scheduler_hints.{hint}", servers, scope)
        if create.key_name is None:
            return None
        public_key = self._public_key(create.context.project_id, create.key_name)
        if public_key is None:
            raise NotFound("keypair", create.key_name, field="key_name")
        return public_key

    def _host_exists(self, host: str) -> bool:
        if host not in self._hosts:
            self._hosts[host] = self._tx.nodes.host_exists(host)
        return self._hosts[host]

    def _group_visible(self, group: str, scope: str | None) -> bool:
        key = (scope, group)
        if key not in self._groups:
            self._groups[key] = self._tx.server_groups.exists(group, project_id=scope)
        return self._groups[key]

    def _public_key(self, project_id: str, name: str) -> str | None:
        """The key pair's public key, None when the project has no key pair of that name."""
        key = (project_id, name)
        if key not in self._public_keys:
            self._public_keys[key] = self._tx.keypairs.public_key(project_id=project_id, name=name)
        return self._public_keys[key]

    def _check_servers(self, field_name: str, uuids: Sequence[str], scope: str | None) -> None:
        if not uuids:
            return
        found = self._tx.instances.live_uuids(uuids, project_id=scope)
        missing = [u for u in uuids if u not in found]
        if missing:
            raise NotFound("server", missing[0], field=field_name)


def _new_instances(
    create: _ValidCreate,
    flavor: Flavor,
    image: Image,
    *,
    now: datetime,
    count: int,
    key_data: str | None,
    security_groups: tuple[str, ...],
) -> list[Instance]:
    """``security_groups``: the resolved groups' names (a caller may have given ids)."""
    reservation_id = new_reservation_id()
    spec = StoredSpec(
        availability_zone=create.zone,
        force_host=create.force_host,
        force_node=create.force_node,
        group=create.group,
        same_host=create.same_host,
        different_host=create.different_host,
        image_properties=dict(image.properties),
        min_count=create.min_count,
        num_instances=count,
    )
    return [
        Instance(
            uuid=str(uuid.uuid4()),
            id=None,
            display_name=name,
            project_id=create.context.project_id,
            flavor=flavor,
            image_id=image.id,
            reservation_id=reservation_id,
            vm_state=VmState.BUILDING,
            task_state=TaskState.SCHEDULING,
            power_state=PowerState.NOSTATE,
            host=None,
            node=None,
            metadata=create.metadata,
            created_at=now,
            request_id=create.context.request_id,
            availability_zone=create.zone,
            request_spec=spec,
            description=create.description,
            key_name=create.key_name,
            key_data=key_data,
            user_data=create.user_data,
            security_groups=security_groups,
            networks=create.networks,
            ephemeral_gb=create.ephemeral_gb,
            config_drive=bool(create.config_drive or create.user_data or key_data),
            tags=create.tags,
        )
        for name in display_names(create.name, count)
    ]
