"""Guest readiness on the compute host: the hypervisor says a guest opened its guest-agent
channel (something only the guest's own software does), and compute reports GUEST_READY to
the conductor like any other instance event. Nothing here looks at the domain's state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from services.common.domain import InstanceEvent, InstanceEventKind, utcnow

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def report(self, event: InstanceEvent) -> None: ...


class GuestReadiness:
    def __init__(self, events: EventSink, host: str, loop: asyncio.AbstractEventLoop) -> None:
        self._events = events
        self._host = host
        self._loop = loop

    def connected(self, uuid: str) -> None:
        """Called from the hypervisor's thread: stamp the time now, report on the loop."""
        event = InstanceEvent(uuid, self._host, InstanceEventKind.GUEST_READY, utcnow())
        log.info("guest %s says it is ready (its guest agent channel opened)", uuid)
        with contextlib.suppress(RuntimeError):  # the loop has closed: the service is gone
            self._loop.call_soon_threadsafe(self._events.report, event)
