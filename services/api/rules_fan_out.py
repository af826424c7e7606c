"""The api's side of security-group propagation: after a change commits, tell the conductor
which groups changed (it pushes the rules to the hosts). A cast in the background: the
change is already durable, and a lost cast is caught up by each host's start-up sync."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class RulesRefresher(Protocol):
    async def refresh_port_rules(
        self, group_ids: Sequence[str], instance_uuids: Sequence[str] = ()
    ) -> None: ...


class ConductorRulesFanOut:
    """``RulesChanged`` through the conductor's RefreshPortRules."""

    def __init__(self, conductor: RulesRefresher) -> None:
        self._conductor = conductor
        self._tasks: set[asyncio.Task[None]] = set()

    def groups_changed(
        self, group_ids: Sequence[str], *, instance_uuids: Sequence[str] = ()
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._send(list(group_ids), list(instance_uuids)), name="refresh-port-rules"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, group_ids: list[str], instance_uuids: list[str]) -> None:
        try:
            await self._conductor.refresh_port_rules(group_ids, instance_uuids)
        except Exception as exc:  # committed already; hosts converge at their next start
            log.warning("telling the conductor that groups %s changed failed: %s", group_ids, exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
