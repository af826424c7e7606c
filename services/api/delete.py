"""DeleteServer: record the intent durably, then let the conductor finish."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext
from services.common.domain import Instance, utcnow
from services.common.errors import NotFound, PeerFailed
from services.common.instance_actions import ActionName
from services.common.records import NewAction
from services.common.stores import ActionStore, InstanceStore, UnitOfWork

log = logging.getLogger(__name__)


class Deleter(Protocol):
    """The conductor's DeleteInstances."""

    async def delete_instances(self, uuids: Sequence[str], *, request_id: str = "") -> int: ...


class RecordTx(Protocol):
    """What the api's server actions record, in one transaction."""

    @property
    def instances(self) -> InstanceStore: ...
    @property
    def actions(self) -> ActionStore: ...


class DeleteServer:
    """Marks the server ``deleting`` and opens a delete action in one transaction, then asks
    the conductor to finish. A conductor that cannot be reached leaves the intent for its
    reconciler: the delete is never lost once this returns."""

    def __init__(self, uow: UnitOfWork[RecordTx], conductor: Deleter) -> None:
        self._uow = uow
        self._conductor = conductor

    async def __call__(self, server_id: str, context: RequestContext) -> None:
        server_id = validation.check_uuid_ref("id", server_id)

        def record(tx: RecordTx) -> Instance | None:
            now = utcnow()
            found = tx.instances.mark_deleting(server_id, project_id=context.scope, now=now)
            if found is not None:
                tx.actions.start(
                    [NewAction(server_id, ActionName.DELETE, context.request_id,
                                       found.project_id)],
                    now,
                )  # fmt: skip
            return found

        if await self._uow.write(record) is None:
            raise NotFound("server", server_id, field="id")
        try:
            await self._conductor.delete_instances([server_id], request_id=context.request_id)
        except PeerFailed as exc:
            log.warning(
                "conductor did not take the delete of %s (%s); the reconciler will finish it",
                server_id,
                exc.status,
            )
