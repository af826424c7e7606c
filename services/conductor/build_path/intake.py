"""Intake: casts queue whole and are taken in batches of up to ``batch_size`` instances.

A Batcher (services/common/batching.py) does the queueing: under load the next pass takes
everything that came while the last one ran; after an idle spell the first cast lingers a
moment for company. The batch handler is the intake's boundary: a pass that fails is tried
again, then left (logged, counted) to the reconciler, which finds the instances still in
``scheduling``; nothing it raises escapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from services.common.batching import Batcher
from services.conductor.build_path.factory import RecentPasswords
from services.conductor.build_path.types import Cast

log = logging.getLogger(__name__)

# A batch whose transaction fails (database away) is tried again; after that the instances
# stay in `scheduling` for the reconciler.
BATCH_ATTEMPTS = 3

# One pass over uuid -> request id.
Schedule = Callable[[dict[str, str]], Awaitable[object]]


class Intake:
    def __init__(
        self,
        schedule: Schedule,
        *,
        batch_size: int,
        linger: timedelta,
        passwords: RecentPasswords,
        count_error: Callable[[str], None] = lambda where: None,
        retry_delay: timedelta = timedelta(milliseconds=200),
    ) -> None:
        self._schedule = schedule
        self._passwords = passwords
        self._count_error = count_error
        self._retry_delay = retry_delay.total_seconds()
        self._batcher: Batcher[Cast, None] = Batcher(
            self._handle, max_batch=batch_size, name="build-intake", linger=linger,
            weigh=lambda cast: len(cast.instance_uuids),
        )  # fmt: skip

    def start(self) -> None:
        self._batcher.start()

    def submit(self, cast: Cast) -> None:
        if cast.instance_uuids:
            self._batcher.put(cast)

    @property
    def backlog(self) -> int:
        """Instances cast and not yet taken by a pass."""
        return self._batcher.backlog

    @property
    def idle(self) -> bool:
        return self._batcher.idle

    async def wait_idle(self) -> None:
        await self._batcher.wait_idle()

    async def close(self) -> None:
        """Stop at once: what is queued stays in `scheduling` for the reconciler."""
        await self._batcher.cancel()

    async def _handle(self, casts: Sequence[Cast]) -> list[BaseException | None]:
        for cast in casts:
            self._passwords.remember(cast.instance_uuids, cast.admin_password)
        request_ids = {u: cast.request_id for cast in casts for u in cast.instance_uuids}
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                await self._schedule(request_ids)
                break
            except Exception:
                # Nothing was committed: the instances are still `scheduling`.
                log.exception("scheduling a batch of %d failed (attempt %d of %d)",
                              len(request_ids), attempt, BATCH_ATTEMPTS)  # fmt: skip
                self._count_error("schedule")
                await asyncio.sleep(self._retry_delay * attempt)
        return [None] * len(casts)
