"""Start, stop and reboot: the api recorded the task_state; hand the action to the host.
A host that cannot be reached gives the action back (task_state cleared) and the caller hears
UNAVAILABLE, so nothing waits forever on an action nobody will do."""

from __future__ import annotations

import logging
from typing import Protocol

import grpc
from sqlalchemy import Connection, select

from services.common.db import actions
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.db.models import INSTANCES, NODES
from services.common.domain import PowerAction, utcnow
from services.common.errors import NotFound, Unavailable

log = logging.getLogger(__name__)


class ComputePowerActions(Protocol):
    async def power_action(
        self, address: str, uuid: str, action: PowerAction, *, request_id: str = ""
    ) -> None: ...


class PowerActions:
    def __init__(self, db: Database, computes: ComputePowerActions) -> None:
        self._db = db
        self._computes = computes

    async def __call__(self, uuid: str, action: PowerAction, request_id: str = "") -> None:
        address = await self._db.read(lambda c: _host_address(c, uuid))
        if address is None:
            await self._db.write(lambda c: _give_back(c, uuid, action, "it has no host"))
            raise NotFound("server", uuid, field="instance_uuid")
        try:
            await self._computes.power_action(address, uuid, action, request_id=request_id)
        except grpc.aio.AioRpcError as exc:
            reason = f"compute host unreachable: {exc.code().name}"
            await self._db.write(lambda c: _give_back(c, uuid, action, reason))
            raise Unavailable(f"{action} of {uuid} not started: {reason}") from exc


def _host_address(connection: Connection, uuid: str) -> str | None:
    row = connection.execute(
        select(NODES.c.rpc_address)
        .join(INSTANCES, INSTANCES.c.host == NODES.c.host)
        .where(INSTANCES.c.uuid == uuid)
    ).first()
    return None if row is None else str(row[0])


def _give_back(connection: Connection, uuid: str, action: PowerAction, reason: str) -> None:
    now = utcnow()
    # Only the power task is given back: a delete that came in meanwhile keeps its task.
    instance_repo.settle_power_action(connection, [uuid], None, None, now)
    actions.finish_actions(
        connection, [uuid], actions.ACTION_OF[action], now, message=f"not started: {reason}"
    )
