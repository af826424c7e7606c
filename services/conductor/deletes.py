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

from services.common.domain import TaskState, VmState, utcnow
from services.common.errors import PeerFailed
from services.common.stores import AllocationStore, InstanceStore, NodeStore, UnitOfWork

log = logging.getLogger(__name__)


class ComputeTerminator(Protocol):
    async def terminate(
        self, address: str, uuids: Sequence[str], *, request_id: str = ""
    ) -> int: ...


class DeleteTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...
    @property
    def nodes(self) -> NodeStore: ...
    @property
    def allocations(self) -> AllocationStore: ...


class DeleteInstances:
    def __init__(
        self,
        uow: UnitOfWork[DeleteTx],
        computes: ComputeTerminator,
        *,
        servers_went: Callable[[Sequence[str]], None] = lambda uuids: None,
    ) -> None:
        self._servers_went = servers_went
        self._uow = uow
        self._computes = computes

    async def __call__(self, uuids: Sequence[str], request_id: str = "") -> int:
        on_hosts = await self._uow.write(lambda tx: _delete_unplaced(tx, uuids))
        self._servers_went(list(uuids))
        for address, host_uuids in on_hosts.items():
            try:
                await self._computes.terminate(address, host_uuids, request_id=request_id)
            except PeerFailed as exc:
                log.warning(
                    "compute %s unreachable (%s): deleting %d instances locally",
                    address,
                    exc.status,
                    len(host_uuids),
                )
                await self._uow.write(_finisher(host_uuids))
        return len(uuids)


def _delete_unplaced(tx: DeleteTx, uuids: Sequence[str]) -> dict[str, list[str]]:
    """Finish at once what no host holds; return the rest grouped by compute address."""
    instances = tx.instances.load(uuids, for_update=True)
    pending = [
        i
        for i in instances
        if i.task_state is TaskState.DELETING and i.vm_state is not VmState.DELETED
    ]
    unplaced = [i.uuid for i in pending if not i.host]
    _finish(tx, unplaced)
    addresses = tx.nodes.rpc_addresses(sorted({i.host for i in pending if i.host}))
    grouped: dict[str, list[str]] = defaultdict(list)
    for instance in pending:
        if not instance.host:
            continue
        address = addresses.get(instance.host)
        if address is None:  # the host's node record is gone: nobody to ask
            _finish(tx, [instance.uuid])
        else:
            grouped[address].append(instance.uuid)
    return grouped


def _finisher(uuids: Sequence[str]) -> Callable[[DeleteTx], None]:
    return lambda tx: _finish(tx, uuids)


def _finish(tx: DeleteTx, uuids: Sequence[str]) -> None:
    if uuids:
        tx.allocations.free(uuids)
        tx.instances.mark_deleted(uuids, utcnow())
