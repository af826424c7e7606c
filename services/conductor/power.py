"""Start, stop and reboot: the api recorded the task_state; hand the action to the host.
A host that cannot be reached gives the action back (task_state cleared) and the caller hears
UNAVAILABLE, so nothing waits forever on an action nobody will do."""

from __future__ import annotations

import logging
from typing import Protocol

from services.common.domain import PowerAction, utcnow
from services.common.errors import NotFound, PeerFailed, Unavailable
from services.common.instance_actions import ACTION_OF
from services.common.stores import ActionStore, InstanceStore, UnitOfWork

log = logging.getLogger(__name__)


class ComputePowerActions(Protocol):
    async def power_action(
        self, address: str, uuid: str, action: PowerAction, *, request_id: str = ""
    ) -> None: ...


class PowerTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...
    @property
    def actions(self) -> ActionStore: ...


class PowerActions:
    def __init__(self, uow: UnitOfWork[PowerTx], computes: ComputePowerActions) -> None:
        self._uow = uow
        self._computes = computes

    async def __call__(self, uuid: str, action: PowerAction, request_id: str = "") -> None:
        address = await self._uow.read(lambda tx: tx.instances.host_address(uuid))
        if address is None:
            await self._uow.write(lambda tx: _give_back(tx, uuid, action, reason="it has no host"))
            raise NotFound("server", uuid, field="instance_uuid")
        try:
            await self._computes.power_action(address, uuid, action, request_id=request_id)
        except PeerFailed as exc:
            reason = f"compute host unreachable: {exc.status}"
            await self._uow.write(lambda tx: _give_back(tx, uuid, action, reason=reason))
            raise Unavailable(f"{action} of {uuid} not started: {reason}") from exc


def _give_back(tx: PowerTx, uuid: str, action: PowerAction, *, reason: str) -> None:
    now = utcnow()
    # Only the power task is given back: a delete that came in meanwhile keeps its task.
    tx.instances.settle_power_action([uuid], vm_state=None, power=None, now=now)
    tx.actions.finish([uuid], ACTION_OF[action], now, message=f"not started: {reason}")
