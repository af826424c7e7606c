"""Readiness: health says SERVING only while the service's dependencies answer (the database,
libvirt), checked every few seconds, so that Kubernetes sends no traffic to a pod that would
only fail it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from services.common.background import BackgroundTask
from services.common.rpc.server import ServiceServer

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]


class Readiness:
    def __init__(
        self,
        server: ServiceServer,
        checks: Sequence[tuple[str, Check]],
        *,
        interval: timedelta = timedelta(seconds=5),
    ) -> None:
        self._server = server
        self._checks = list(checks)
        self._interval = interval.total_seconds()
        self._task = BackgroundTask("readiness", self._run)
        self.ready = False

    async def check_once(self) -> bool:
        failing = []
        for name, check in self._checks:
            try:
                ok = await asyncio.wait_for(check(), self._interval)
            except Exception:
                ok = False
            if not ok:
                failing.append(name)
        ready = not failing
        if ready != self.ready:
            if ready:
                log.info("ready: every dependency answers")
            else:
                log.warning("not ready: %s does not answer", ", ".join(failing))
            await self._server.set_serving(ready)
            self.ready = ready
        return ready

    def start(self) -> None:
        self._task.start()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_once()

    async def close(self) -> None:
        await self._task.close()
