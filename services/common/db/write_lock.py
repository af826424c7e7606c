"""A queue for SQLite's single write lock, shared by every process that writes the file.

SQLite lets one connection write at a time. A writer that finds the lock taken sleeps in its
busy handler on a fixed schedule (1, 2, 5, 10, 15, 20, 25 ms ...), so a short transaction that
arrives just after another one waits far longer than the other held the lock, and a process
that writes often (the conductor) keeps winning against one that polls (the api): measured,
creates at 200/s waited 25 ms at the median for a lock held a few milliseconds at a time.

Writers that first take an exclusive ``flock`` on a file beside the database queue in the
kernel instead, and the next one is woken the moment the lock is released. SQLite's own lock
stays the guard of correctness; this lock only orders the writers that use it (a writer that
does not, such as a migration, is still waited for by the busy handler).

The wait has no timeout of its own: a holder keeps the lock only for one transaction, which
SQLite's busy timeout bounds when it waits on an outside writer, and the kernel releases it
when the holding process dies, however it dies. Write units of work do not nest (one would
wait for itself here, as it would on SQLite's lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path


class WriteQueue:
    """Exclusive, process-wide and cross-process: one holder at a time per database file."""

    def __init__(self, database_path: Path) -> None:
        self._path = database_path.with_name(database_path.name + ".write-lock")
        # flock belongs to the open file, not the thread: threads of one process take turns
        # on this lock first, then on the file.
        self._threads = threading.Lock()
        self._fd: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            if self._fd is None:  # opened on first use: no I/O when the engine is built
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
