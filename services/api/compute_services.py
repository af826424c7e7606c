"""Compute hosts for admins: capacity, usage, up/down; enable and disable with a reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from services.api.context import RequestContext, require_admin
from services.api.validation import check_name
from services.common.domain import utcnow
from services.common.errors import InvalidArgument, NotFound
from services.common.records import NodeView
from services.common.stores import NodeStore, UnitOfWork


class NodesTx(Protocol):
    @property
    def nodes(self) -> NodeStore: ...


class ComputeServiceUseCases:
    def __init__(self, uow: UnitOfWork[NodesTx], *, service_down_time: timedelta) -> None:
        self._uow = uow
        self._down = service_down_time

    async def list_services(self, context: RequestContext) -> list[NodeView]:
        require_admin(context, "listing compute services")
        down = self._down
        return await self._uow.read(lambda tx: tx.nodes.views(now=utcnow(), service_down_time=down))

    async def set_status(
        self, context: RequestContext, host: str, *, enabled: bool, reason: str
    ) -> NodeView:
        require_admin(context, "enabling or disabling compute services")
        host = check_name("host", host)
        if not enabled:
            reason = check_name("disabled_reason", reason)
        elif reason:
            raise InvalidArgument("disabled_reason", "only a disable takes a reason")
        changed = await self._uow.write(
            lambda tx: tx.nodes.set_status(host, enabled=enabled, reason=reason or None,
                                           now=utcnow())
        )  # fmt: skip
        if not changed:
            raise NotFound("compute host", host, field="host")
        views = await self.list_services(context)
        return next(v for v in views if v.state.host == host)
