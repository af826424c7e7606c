"""Guest readiness on the compute host: the hypervisor says a guest opened its guest-agent
channel (something only the guest's own software does), and compute reports GUEST_READY to
the conductor like any other instance event. Nothing here looks at the domain's state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from services.common.domain import InstanceEvent, InstanceEventKind, utcnow

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def report(self, event: InstanceEvent) -> None: ...


class GuestReadiness:
    def __init__(
        self,
        events: EventSink,
        host: str,
        loop: asyncio.AbstractEventLoop,
        *,
        ours: Callable[[str], bool],
    ) -> None:
        """``ours``: whether an instance is this compute's. The hypervisor reports every
        domain's agent, and one libvirtd may serve other services' domains too (or another
        compute's, on a test machine): only our own instances' readiness is ours to report
        (the conductor refuses the rest)."""
        self._events = events
        self._host = host
        self._loop = loop
        self._ours = ours

    def connected(self, uuid: str) -> None:
        """Called from the hypervisor's thread: stamp the time now, report on the loop."""
        if not self._ours(uuid):
            log.debug("guest agent of %s, not an instance of this host: not reported", uuid)
            return
        event = InstanceEvent(uuid, self._host, InstanceEventKind.GUEST_READY, utcnow())
        log.info("guest %s says it is ready (its guest agent channel opened)", uuid)
        with contextlib.suppress(RuntimeError):  # the loop has closed: the service is gone
            self._loop.call_soon_threadsafe(self._events.report, event)
