"""A started service: its gRPC server plus the things to close, in order, when it stops."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.common.rpc.server import ServiceServer, bound_address

log = logging.getLogger(__name__)


@dataclass
class RunningService:
    name: str
    server: ServiceServer
    listen: str
    advertised: str = ""
    # Called in order while the server still answers (drain work, flush reports).
    draining: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Called in order after the server stops taking RPCs.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    grace: float = 5.0

    @property
    def address(self) -> str:
        return self.advertised or bound_address(self.listen, self.server.port)

    async def stop(self) -> None:
        log.info("%s stopping", self.name)
        await self.server.set_serving(False)
        for drain in self.draining:
            try:
                await drain()
            except Exception:
                log.exception("%s: error while draining", self.name)
        await self.server.stop(self.grace)
        for close in self.closers:
            try:
                await close()
            except Exception:
                log.exception("%s: error while closing", self.name)
        log.info("%s stopped", self.name)
