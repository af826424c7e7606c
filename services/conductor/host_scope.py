"""What a compute host may report on: the instances placed on it, now or at an earlier
attempt (a late report from a host a build was rescheduled away from is legitimate, and the
event guards make it harmless). Anything else from a compute is an attempt to act on another
host's instances."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from services.common.db import instances as instance_repo
from services.common.db.engine import Database


def instances_not_on(connection: Connection, host: str, uuids: Sequence[str]) -> list[str]:
    """Those of ``uuids`` never placed on ``host`` (unknown ones included)."""
    known = {i.uuid: i for i in instance_repo.load_instances(connection, list(set(uuids)))}
    foreign = []
    for uuid in dict.fromkeys(uuids):
        instance = known.get(uuid)
        if instance is None:
            foreign.append(uuid)
            continue
        if instance.host == host:
            continue
        if host not in instance.request_spec.tried_hosts:
            foreign.append(uuid)
    return foreign


class HostScope:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def foreign_instances(self, host: str, uuids: Sequence[str]) -> list[str]:
        if not uuids:
            return []
        return await self._db.read(lambda c: instances_not_on(c, host, uuids))
