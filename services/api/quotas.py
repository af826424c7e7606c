"""Quotas: limits per project and the check every create passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.api.context import RequestContext, require_admin
from services.api.validation import check_name
from services.common.errors import InvalidArgument, QuotaExceeded
from services.common.records import QUOTA_RESOURCES, QUOTA_UNLIMITED, Usage
from services.common.stores import QuotaStore, UnitOfWork


@dataclass(frozen=True, slots=True)
class QuotaView:
    project_id: str
    limits: dict[str, int]
    usage: Usage


class QuotaTracker:
    """Usage per project inside one create batch: each create sees the ones before it."""

    def __init__(self, store: QuotaStore, defaults: dict[str, int]) -> None:
        self._store = store
        self._defaults = defaults
        self._state: dict[str, tuple[dict[str, int], dict[str, int]]] = {}

    def allow(self, project_id: str, *, count: int, vcpus: int, ram: int, minimum: int) -> int:
        """How many of ``count`` servers (between ``minimum`` and ``count``) fit the project's
        quota, as Nova lowers max_count to what fits; QuotaExceeded if not even ``minimum``."""
        if project_id not in self._state:
            limits = self._store.limits(project_id, self._defaults)
            # Counting usage scans the project's instances; a project without limits skips it.
            counted = any(limit != QUOTA_UNLIMITED for limit in limits.values())
            current = self._store.usage(project_id) if counted else None
            self._state[project_id] = (
                limits,
                {r: current.get(r) if current else 0 for r in QUOTA_RESOURCES},
            )
        limits, used = self._state[project_id]
        per_server = {"instances": 1, "cores": vcpus, "ram": ram}
        fits = count
        for resource, each in per_server.items():
            limit = limits[resource]
            if limit == QUOTA_UNLIMITED or each == 0:
                continue
            fits = min(fits, max(0, (limit - used[resource]) // each))
        if fits < minimum:
            resource = next(
                r
                for r, each in per_server.items()
                if limits[r] != QUOTA_UNLIMITED and used[r] + each * minimum > limits[r]
            )
            raise QuotaExceeded(
                resource,
                limit=limits[resource],
                in_use=used[resource],
                requested=per_server[resource] * minimum,
            )
        for resource, each in per_server.items():
            used[resource] += each * fits
        return fits

    def give_back(self, project_id: str, *, count: int, vcpus: int, ram: int) -> None:
        """Undo an ``allow`` whose create failed later in the batch (e.g. its network is
        full), so that the creates after it are not refused for usage that never happened."""
        _, used = self._state[project_id]
        for resource, each in (("instances", 1), ("cores", vcpus), ("ram", ram)):
            used[resource] -= each * count


class QuotaTx(Protocol):
    @property
    def quotas(self) -> QuotaStore: ...


class QuotaUseCases:
    def __init__(self, uow: UnitOfWork[QuotaTx], defaults: dict[str, int]) -> None:
        self._uow = uow
        self._defaults = defaults

    async def get(self, context: RequestContext, project_id: str) -> QuotaView:
        project = check_name("project_id", project_id) if project_id else context.project_id
        if project != context.project_id:
            require_admin(context, "reading another project's quota")

        def read(tx: QuotaTx) -> QuotaView:
            return QuotaView(
                project, tx.quotas.limits(project, self._defaults), tx.quotas.usage(project)
            )

        return await self._uow.read(read)

    async def set(self, context: RequestContext, project_id: str, new: dict[str, int]) -> QuotaView:
        require_admin(context, "setting quotas")
        project = check_name("project_id", project_id)
        for resource, limit in new.items():
            if limit < QUOTA_UNLIMITED:
                raise InvalidArgument(resource, f"must be -1 (unlimited) or more, got {limit}")
        await self._uow.write(lambda tx: tx.quotas.set_limits(project, new))
        return await self.get(context, project)
