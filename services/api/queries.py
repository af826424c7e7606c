"""Reads of the public API: servers and their actions."""

from __future__ import annotations

from services.api import validation
from services.api.context import RequestContext
from services.common.db import actions
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.domain import Instance
from services.common.errors import NotFound


class ServerQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, server_id: str, context: RequestContext, *, field: str = "id") -> Instance:
        server_id = validation.check_uuid_ref(field, server_id)
        found = await self._db.read(
            lambda c: instance_repo.get_instance(c, server_id, project_id=context.scope)
        )
        if found is None:
            raise NotFound("server", server_id, field=field)
        return found

    async def list_servers(
        self, context: RequestContext, *, reservation_id: str = ""
    ) -> list[Instance]:
        return await self._db.read(
            lambda c: instance_repo.list_instances(
                c, project_id=context.scope, reservation_id=reservation_id or None
            )
        )

    async def actions(self, server_id: str, context: RequestContext) -> list[actions.Action]:
        server = await self.get(server_id, context, field="server_id")
        return await self._db.read(lambda c: actions.list_actions(c, server.uuid))
