"""Compute asks the conductor for its host network state at start-up (until it gets it) and
again every ``interval``, and hands it to the datapath: a push the conductor could not
deliver (this host was down or restarting) is converged here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from services.common.overlay import HostNetworkState
from services.compute.manager import ComputeManager

log = logging.getLogger(__name__)


class HostStateSource(Protocol):
    async def host_state(self, host: str) -> HostNetworkState: ...


class HostNetworkSync:
    def __init__(
        self, manager: ComputeManager, source: HostStateSource, *, interval: float
    ) -> None:
        self._manager = manager
        self._source = source
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="host-network-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sync_once(self) -> HostNetworkState:
        manager = self._manager
        state = await self._source.host_state(manager.host)
        await manager.run_blocking(manager.network.set_host_state, state)
        return state

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                state = await self.sync_once()
                if not self.synced.is_set():
                    log.info("host network state applied: %d networks, %d uplinks, %d floating "
                             "addresses", len(state.overlay), len(state.uplinks),
                             len(state.floating))  # fmt: skip
                self.synced.set()
                delay = self._interval
            except Exception as exc:  # the conductor may not answer yet: try again
                log.warning("host network state sync failed (%s); retrying", exc)
                delay = min(max(delay * 2, 0.2), 5.0) if not self.synced.is_set() else delay
            await asyncio.sleep(delay)
