"""Per-project caps on calls in flight and on open streams (RESOURCE_EXHAUSTED beyond).

The rate limit bounds how often a project may start calls; these bound how many of its calls
hold the service at once, so that a project that opens many slow calls or long watches cannot
take every database thread or event-loop slot from the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from services.common.errors import ErrorReason, RateLimited

# A call in flight ends within the unary deadline, usually far sooner: a client may try again
# after this. A stream ends when its client closes it, which no retry delay can foretell.
CALL_RETRY_AFTER = timedelta(milliseconds=500)


class Admission:
    def __init__(self, *, calls_per_project: int, streams_per_project: int) -> None:
        """A cap of 0 means no cap."""
        self._caps = {False: calls_per_project, True: streams_per_project}
        self._open: dict[bool, Counter[str]] = {False: Counter(), True: Counter()}

    def in_flight(self, project_id: str, *, stream: bool = False) -> int:
        return self._open[stream][project_id]

    def others_in_flight(self, project_id: str) -> bool:
        """Whether any other project has a unary call in flight (read from worker threads:
        a snapshot, as good as the moment it is taken)."""
        calls = self._open[False]
        return len(calls) > 1 or (len(calls) == 1 and project_id not in calls)

    def enter(self, project_id: str, *, stream: bool = False) -> Callable[[], None]:
        """Count one more call (or stream) of ``project_id``; returns what ends it (call it
        exactly once). RateLimited when the project is at its cap."""
        cap, counts = self._caps[stream], self._open[stream]
        if cap and counts[project_id] >= cap:
            what = "open streams" if stream else "calls in flight"
            raise RateLimited(
                f"too many {what} for this project (at most {cap}); retry when one ends",
                retry_after=None if stream else CALL_RETRY_AFTER,
                reason=(
                    ErrorReason.TOO_MANY_STREAMS if stream else ErrorReason.TOO_MANY_CALLS_IN_FLIGHT
                ),
            )
        counts[project_id] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            counts[project_id] -= 1
            if counts[project_id] <= 0:
                del counts[project_id]

        return release
