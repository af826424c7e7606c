"""The api's side of host network changes (a network connected or disconnected, a floating
address associated or not): after the commit, tell the conductor, which pushes every host
whose state changed. A cast in the background: the change is durable already, and each host
converges at its next periodic sync if the cast is lost."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class HostNetworksRefresher(Protocol):
    async def refresh_host_networks(self) -> None: ...


class ConductorHostNetworks:
    def __init__(self, conductor: HostNetworksRefresher) -> None:
        self._conductor = conductor
        self._tasks: set[asyncio.Task[None]] = set()

    def host_networks_changed(self) -> None:
        task = asyncio.get_running_loop().create_task(self._send(), name="refresh-host-networks")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        try:
            await self._conductor.refresh_host_networks()
        except Exception as exc:  # committed already; hosts converge at their next sync
            log.warning("telling the conductor that host networks changed failed: %s", exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
