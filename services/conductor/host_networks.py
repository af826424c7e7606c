"""Each compute host's network state (overlay peers, uplinks, floating addresses) follows
the database: when servers come or go, the conductor recomputes every host's state and
pushes it to the hosts whose state changed (coalesced over a short linger, as the rule
fan-out). A host that misses a push converges at its next start-up or periodic sync, when
it asks for its state itself (``GetHostNetworkState``).

What was last pushed is remembered per conductor process only: a restarted conductor, or
another replica, pushes every host once more, which is harmless (the push is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.db import overlay as overlay_repo
from services.common.db.engine import Database
from services.common.overlay import HostNetworkState

log = logging.getLogger(__name__)


class HostStatePusher(Protocol):
    async def set_host_state(self, address: str, state: HostNetworkState) -> None: ...


@dataclass(frozen=True)
class HostNetworkMetrics:
    push: Histogram
    failures: Counter

    @staticmethod
    def create(registry: CollectorRegistry) -> HostNetworkMetrics:
        return HostNetworkMetrics(
            Histogram("nova_grpc_host_network_push_seconds",
                      "One round of host network state pushes (derive every host's state, "
                      "push the changed ones).", registry=registry),
            Counter("nova_grpc_host_network_push_failures",
                    "Hosts a host network state push did not reach (they converge at their "
                    "next sync).", registry=registry),
        )  # fmt: skip


class HostNetworkFanOut:
    def __init__(
        self,
        db: Database,
        computes: HostStatePusher,
        *,
        linger: timedelta = timedelta(milliseconds=100),
        metrics: HostNetworkMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._db = db
        self._computes = computes
        self._linger = linger.total_seconds()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pushed: dict[str, HostNetworkState] = {}
        self.rounds = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="host-network-fan-out")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def servers_came_or_went(self, instance_uuids: Sequence[str]) -> None:
        """Never blocks; any change may move a host in or out of a network."""
        if instance_uuids:
            self._wake.set()

    def changed(self) -> None:
        self._wake.set()

    async def state_of(self, host: str) -> HostNetworkState:
        settled = await self._db.read(lambda c: overlay_repo.settled_host_state(c, host))
        if settled is not None:
            return settled
        return await self._db.write(lambda c: overlay_repo.host_state(c, host))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._linger)
            self._wake.clear()
            try:
                await self.push()
            except Exception:  # a background task never dies of one bad round
                log.exception("pushing host network state failed")

    async def push(self) -> list[str]:
        """Push every host whose state differs from what this process pushed last; returns
        the hosts pushed to."""
        started = time.perf_counter()
        # Read first: the writer is taken only when a gateway address must change hands.
        states = await self._db.read(overlay_repo.settled_host_states)
        if states is None:
            states = await self._db.write(overlay_repo.host_states)
        # a host that lost its last port gets an empty state (its flood lists go)
        for host in set(self._pushed) - set(states):
            states[host] = HostNetworkState(host=host)
        due = [h for h, s in sorted(states.items()) if self._pushed.get(h) != s]
        if not due:
            self._observe(started, 0)
            return []
        addresses = await self._db.read(lambda c: overlay_repo.rpc_addresses(c, due))
        pushed: list[str] = []
        for host in due:
            if host not in addresses:
                continue
            try:
                await self._computes.set_host_state(addresses[host], states[host])
            except Exception as exc:  # the host converges at its next sync
                log.warning("network state not pushed to %s: %s", host, exc)
                continue
            self._pushed[host] = states[host]
            pushed.append(host)
        self.rounds += 1
        self._observe(started, len(due) - len(pushed))
        log.info("host network state pushed to %d of %d hosts in %.3fs",
                 len(pushed), len(due), time.perf_counter() - started)  # fmt: skip
        return pushed

    def _observe(self, started: float, failed: int) -> None:
        if self._metrics is not None:
            self._metrics.push.observe(time.perf_counter() - started)
            self._metrics.failures.inc(failed)
