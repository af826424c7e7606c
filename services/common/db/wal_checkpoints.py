"""SQLite's write-ahead log copied back into the database by a thread of its own.

By default SQLite checkpoints when a commit finds the log past 1,000 pages: that commit, one
of whichever process happens to cross the line, copies the log into the database before it
returns, with the one writer's lock still held. Measured in the api under a flood of creates
of 100 servers, another project's create of one server took up to 112 ms in its commit this
way (its own transaction: 6 ms), and every create behind it waited as long. A service that
takes the checkpoints on this thread instead (``Database(..., wal_checkpoints=...)``) turns
the commit-time checkpoints off on its connections. A PASSIVE checkpoint takes no write lock:
writers go on appending to the log meanwhile, and it copies what no reader still needs.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

log = logging.getLogger(__name__)

# Give up a checkpoint rather than wait long for the checkpoint lock (another process's
# checkpointer holds it): the next one comes soon.
BUSY_TIMEOUT_MS = 100


class WalCheckpointer:
    def __init__(self, database: Path, *, every: timedelta) -> None:
        self._database = database
        self._every = every.total_seconds()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def checkpoint_once(self) -> tuple[int, int]:
        """(frames in the log, frames copied into the database) after one PASSIVE pass."""
        connection = sqlite3.connect(self._database, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            connection.close()
        self.checkpoints += 1
        return int(frames), int(copied)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.checkpoint_once()
            except sqlite3.Error as exc:  # the file away, a disk error: try again next time
                log.warning("WAL checkpoint of %s failed: %s", self._database, exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        # the log left behind is not lost: the next opener (or checkpoint) copies it
        with contextlib.suppress(sqlite3.Error):
            self.checkpoint_once()
