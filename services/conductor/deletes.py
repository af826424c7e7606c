"""Finishing deletes the api recorded (task_state ``deleting``).

An instance no host holds (still scheduling, or ERROR with no valid host) is deleted at once.
One on a host is handed to that host's TerminateInstance, which reports DELETED when the
domain, its files and the host's claim are gone. When the host cannot be reached, the delete
completes locally (as Nova's local delete) and the compute service reaps the domain when it
comes back: its start-up sync removes every domain of ours that no live instance owns.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy import Connection, select

from services.common.db import instances as instance_repo
from services.common.db import placement
from services.common.db.engine import Database
from services.common.db.models import NODES
from services.common.domain import TaskState, VmState, utcnow
from services.common.errors import PeerFailed

log = logging.getLogger(__name__)


class ComputeTerminator(Protocol):
    async def terminate(
        self, address: str, uuids: Sequence[str], *, request_id: str = ""
    ) -> int: ...


class DeleteInstances:
    def __init__(
        self,
        db: Database,
        computes: ComputeTerminator,
        *,
        servers_went: Callable[[Sequence[str]], None] = lambda uuids: None,
    ) -> None:
        self._servers_went = servers_went
        self._db = db
        self._computes = computes

    async def __call__(self, uuids: Sequence[str], request_id: str = "") -> int:
        on_hosts = await self._db.write(lambda c: self._delete_unplaced(c, uuids))
        self._servers_went(list(uuids))
        for address, host_uuids in on_hosts.items():
            try:
                await self._computes.terminate(address, host_uuids, request_id=request_id)
            except PeerFailed as exc:
                log.warning(
                    "compute %s unreachable (%s): deleting %d instances locally",
                    address,
                    exc.reason,
                    len(host_uuids),
                )
                await self._db.write(_finisher(host_uuids))
        return len(uuids)

    def _delete_unplaced(
        self, connection: Connection, uuids: Sequence[str]
    ) -> dict[str, list[str]]:
        """Finish at once what no host holds; return the rest grouped by compute address."""
        instances = instance_repo.load_instances(connection, uuids, for_update=True)
        pending = [
            i
            for i in instances
            if i.task_state is TaskState.DELETING and i.vm_state is not VmState.DELETED
        ]
        unplaced = [i.uuid for i in pending if not i.host]
        _finish(connection, unplaced)
        hosts = {i.host for i in pending if i.host}
        rows = connection.execute(
            select(NODES.c.host, NODES.c.rpc_address).where(NODES.c.host.in_(hosts))
        )
        addresses: dict[str, str] = {host: address for host, address in rows}
        grouped: dict[str, list[str]] = defaultdict(list)
        for instance in pending:
            if not instance.host:
                continue
            address = addresses.get(instance.host)
            if address is None:  # the host's node record is gone: nobody to ask
                _finish(connection, [instance.uuid])
            else:
                grouped[address].append(instance.uuid)
        return grouped


def _finisher(uuids: Sequence[str]) -> Callable[[Connection], None]:
    return lambda connection: _finish(connection, uuids)


def _finish(connection: Connection, uuids: Sequence[str]) -> None:
    if uuids:
        placement.free_allocations(connection, uuids)
        instance_repo.mark_deleted(connection, uuids, utcnow())
