"""Stops a database read that ran past its deadline or whose caller went away, so that a slow
query (a crafted filter, a huge scan) cannot hold a read thread and a connection for long.

SQLite: a progress handler, called every few hundred virtual-machine steps, interrupts the
statement. PostgreSQL: ``SET LOCAL statement_timeout`` bounds each statement of the
transaction, and a caller that goes away sends a cancel request for the running one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

# SQLite virtual-machine instructions between two deadline checks: a few microseconds apart.
PROGRESS_STEPS = 1000
# How often a cancelled PostgreSQL read is sent its cancel request again.
RECANCEL_S = 0.1


GUARD_KEY = "nova_grpc_read_guard"


def check_before_statement(conn: Connection, *_: Any) -> None:
    """The engine's before_cursor_execute hook: a stopped read runs no further statement."""
    guard = conn.info.get(GUARD_KEY)
    if guard is not None:
        guard.check()


class ReadGuard:
    def __init__(self, deadline: float | None) -> None:
        """``deadline`` on the ``time.monotonic`` clock; None: only cancellation stops it."""
        self.deadline = deadline
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._raw: Any = None
        self._sqlite = False
        self._connection_info: dict[Any, Any] = {}

    @property
    def tripped(self) -> bool:
        """Whether the guard (rather than the database) ended the read."""
        return self._cancelled.is_set() or (
            self.deadline is not None and time.monotonic() >= self.deadline
        )

    def _stop(self) -> int:
        return 1 if self.tripped else 0

    def attach(self, connection: Connection, *, sqlite: bool) -> None:
        raw: Any = connection.connection.driver_connection
        if sqlite:
            raw.set_progress_handler(self._stop, PROGRESS_STEPS)
        elif self.deadline is not None:
            remaining_ms = max(1, int((self.deadline - time.monotonic()) * 1000))
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {remaining_ms}")
        connection.info[GUARD_KEY] = self
        with self._lock:
            self._raw, self._sqlite = raw, sqlite
            self._connection_info = connection.info

    def detach(self) -> None:
        """Before the connection goes back to the pool: a late cancel must not reach the
        next user of the connection."""
        with self._lock:
            raw, self._raw = self._raw, None
            self._connection_info.pop(GUARD_KEY, None)
        if raw is not None and self._sqlite:
            # closed: a read that ``check`` stopped has its connection invalidated
            with contextlib.suppress(sqlite3.ProgrammingError):
                raw.set_progress_handler(None, 0)

    @property
    def attached(self) -> bool:
        return self._raw is not None

    def cancel(self) -> None:
        """The caller went away: stop the running statement (from any thread). On PostgreSQL
        a cancel request that arrives between two statements is ignored, so the caller sends
        it again while the read is attached (``read`` does, every ``RECANCEL_S``), and
        ``check`` refuses to start another statement."""
        self._cancelled.set()
        with self._lock:
            if self._raw is not None and not self._sqlite:
                self._raw.cancel()

    def check(self) -> None:
        """Before each statement: a tripped guard starts none."""
        if self.tripped:
            raise TimeoutError("read stopped")


def guarded(connection: Connection, checkpoint: Callable[[], None]) -> Callable[[], None]:
    """``checkpoint`` that first stops a read whose guard tripped: decoding a large result in
    Python runs no statement, so neither the progress handler nor ``check_before_statement``
    would stop it, and a read whose caller had gone kept its thread (and the interpreter)
    until it had decoded every row."""
    guard = connection.info.get(GUARD_KEY)
    if guard is None:
        return checkpoint

    def check_then() -> None:
        guard.check()
        checkpoint()

    return check_then
