"""The api's use cases: create (validate, record, cast), get and list servers.

Creates are group-committed: concurrent CreateServer calls share one transaction (natural
batching), and the casts to the conductor are sent by the batch after its commit, so a client
that hangs up mid-call can never leave recorded instances that nobody builds.
"""

from __future__ import annotations

import logging
import secrets
import string
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import grpc
from sqlalchemy import Connection

from services.api import validation
from services.common.batching import Batcher
from services.common.db import catalog
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.domain import (
    Flavor,
    Image,
    Instance,
    PowerState,
    TaskState,
    VmState,
    utcnow,
)
from services.common.errors import DomainError, InvalidArgument, NotFound

log = logging.getLogger(__name__)

_RESERVATION_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True, slots=True)
class RequestContext:
    project_id: str
    request_id: str
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class CreateServerCommand:
    name: str
    flavor_ref: str
    image_ref: str
    min_count: int | None = None
    max_count: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateServerResult:
    server_ids: list[str]
    reservation_id: str


class Deleter(Protocol):
    """The conductor's DeleteInstances."""

    async def delete_instances(self, uuids: Sequence[str], *, request_id: str = "") -> int: ...


class BuildCaster(Protocol):
    """The one-way path to the conductor (a client stream in production)."""

    def cast(
        self, instance_uuids: Sequence[str], *, reservation_id: str, request_id: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class _ValidCreate:
    name: str
    flavor_ref: str
    image_ref: str
    min_count: int
    max_count: int
    metadata: dict[str, str]
    context: RequestContext


def new_reservation_id() -> str:
    return "r-" + "".join(secrets.choice(_RESERVATION_ALPHABET) for _ in range(10))


def display_names(name: str, count: int) -> list[str]:
    """Nova's multi_instance_display_name_template: ``name-1``, ``name-2``, ... for count > 1."""
    return [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]


class CreateServers:
    def __init__(self, db: Database, caster: BuildCaster, *, max_batch: int = 256) -> None:
        self._db = db
        self._caster = caster
        self._batcher: Batcher[_ValidCreate, CreateServerResult] = Batcher(
            self._record_batch, max_batch=max_batch, name="create-servers"
        )

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    async def __call__(
        self, command: CreateServerCommand, context: RequestContext
    ) -> CreateServerResult:
        min_count, max_count = validation.check_counts(command.min_count, command.max_count)
        valid = _ValidCreate(
            name=validation.check_name("name", command.name),
            flavor_ref=validation.check_ref("flavor_ref", command.flavor_ref),
            image_ref=validation.check_ref("image_ref", command.image_ref),
            min_count=min_count,
            max_count=max_count,
            metadata=validation.check_metadata(command.metadata),
            context=context,
        )
        return await self._batcher.submit(valid)

    async def _record_batch(
        self, creates: Sequence[_ValidCreate]
    ) -> list[CreateServerResult | BaseException]:
        results, casts = await self._db.write(lambda c: self._record(c, creates))
        for result, create in casts:
            self._caster.cast(
                result.server_ids,
                reservation_id=result.reservation_id,
                request_id=create.context.request_id,
            )
        return results

    def _record(
        self, connection: Connection, creates: Sequence[_ValidCreate]
    ) -> tuple[
        list[CreateServerResult | BaseException], list[tuple[CreateServerResult, _ValidCreate]]
    ]:
        """Resolve references and insert every accepted create in this one transaction.
        A create that fails resolution writes nothing; the others are unaffected."""
        lookup = _CatalogLookup(connection)
        results: list[CreateServerResult | BaseException] = []
        accepted: list[tuple[CreateServerResult, _ValidCreate]] = []
        rows: list[Instance] = []
        now = utcnow()
        for create in creates:
            try:
                flavor = lookup.flavor(create.flavor_ref)
                image = lookup.image(create.image_ref)
            except DomainError as exc:
                results.append(exc)
                continue
            new = _new_instances(create, flavor, image, now)
            rows.extend(new)
            result = CreateServerResult([i.uuid for i in new], new[0].reservation_id)
            results.append(result)
            accepted.append((result, create))
        instance_repo.insert_instances(connection, rows)
        return results, accepted


class _CatalogLookup:
    """Flavor and image resolution for one batch: each reference is read once."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._flavors: dict[str, Flavor | None] = {}
        self._images: dict[str, Image | None] = {}

    def flavor(self, ref: str) -> Flavor:
        if ref not in self._flavors:
            self._flavors[ref] = catalog.find_flavor(self._connection, ref)
        found = self._flavors[ref]
        if found is None:
            raise NotFound("flavor", ref, field="flavor_ref")
        return found

    def image(self, ref: str) -> Image:
        if ref not in self._images:
            self._images[ref] = catalog.find_image(self._connection, ref)
        found = self._images[ref]
        if found is None:
            raise NotFound("image", ref, field="image_ref")
        if found.status != "active":
            raise InvalidArgument("image_ref", f"image {found.name!r} is {found.status}")
        return found


def _new_instances(
    create: _ValidCreate, flavor: Flavor, image: Image, now: datetime
) -> list[Instance]:
    reservation_id = new_reservation_id()
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
        )
        for name in display_names(create.name, create.max_count)
    ]


class ServerQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, server_id: str, context: RequestContext) -> Instance:
        server_id = validation.check_uuid_ref("id", server_id)
        project = None if context.is_admin else context.project_id
        found = await self._db.read(
            lambda c: instance_repo.get_instance(c, server_id, project_id=project)
        )
        if found is None:
            raise NotFound("server", server_id, field="id")
        return found

    async def list(self, context: RequestContext, *, reservation_id: str = "") -> list[Instance]:
        project = None if context.is_admin else context.project_id
        return await self._db.read(
            lambda c: instance_repo.list_instances(
                c, project_id=project, reservation_id=reservation_id or None
            )
        )


class DeleteServer:
    """Records the intent (task_state ``deleting``) durably, then asks the conductor to finish.
    A conductor that cannot be reached leaves the intent for its reconciler."""

    def __init__(self, db: Database, conductor: Deleter) -> None:
        self._db = db
        self._conductor = conductor

    async def __call__(self, server_id: str, context: RequestContext) -> None:
        server_id = validation.check_uuid_ref("id", server_id)
        project = None if context.is_admin else context.project_id
        now = utcnow()
        found = await self._db.write(
            lambda c: instance_repo.mark_deleting(c, server_id, project_id=project, now=now)
        )
        if found is None:
            raise NotFound("server", server_id, field="id")
        try:
            await self._conductor.delete_instances([server_id], request_id=context.request_id)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "conductor did not take the delete of %s (%s); the reconciler will finish it",
                server_id,
                exc.code().name,
            )
