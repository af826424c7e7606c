"""Server groups: create, show, list, delete (Nova's os-server-groups)."""

from __future__ import annotations

from typing import Protocol

from services.api import validation
from services.api.context import RequestContext
from services.common.domain import GroupPolicy, utcnow
from services.common.errors import NotFound
from services.common.records import ServerGroup
from services.common.stores import ServerGroupStore, UnitOfWork


class GroupsTx(Protocol):
    @property
    def server_groups(self) -> ServerGroupStore: ...


class ServerGroupUseCases:
    def __init__(self, uow: UnitOfWork[GroupsTx]) -> None:
        self._uow = uow

    async def create(self, name: str, policy: GroupPolicy, context: RequestContext) -> ServerGroup:
        name = validation.check_name("name", name)
        return await self._uow.write(
            lambda tx: tx.server_groups.create(
                name=name, project_id=context.project_id, policy=policy, now=utcnow()
            )
        )

    async def get(self, group_id: str, context: RequestContext) -> ServerGroup:
        group_id = validation.check_uuid_ref("id", group_id)
        found = await self._uow.read(
            lambda tx: tx.server_groups.get([group_id], project_id=context.scope)
        )
        if group_id not in found:
            raise NotFound("server group", group_id, field="id")
        return found[group_id]

    async def list_groups(self, context: RequestContext) -> list[ServerGroup]:
        return await self._uow.read(
            lambda tx: tx.server_groups.list_groups(project_id=context.scope)
        )

    async def delete(self, group_id: str, context: RequestContext) -> None:
        await self.get(group_id, context)
        await self._uow.write(lambda tx: tx.server_groups.delete(group_id))
