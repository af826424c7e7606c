"""The database adapter: engines, units of work, and a thread pool so that asyncio services
never block their event loop on a query.

SQLite (the embedded default) gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writers:
several processes share the file, and a deferred transaction that reads then writes can fail
with SQLITE_BUSY without ever waiting. Readers keep a plain deferred ``BEGIN`` so they never
queue behind writers. Writers to a SQLite file also queue on a lock file first (write_lock.py),
so that the next writer starts the moment the last one commits instead of when SQLite's busy
handler next wakes it. Any other SQLAlchemy URL (PostgreSQL through psycopg 3) is used as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from services.common import name_patterns
from services.common.context import tenant_var
from services.common.db.read_guard import RECANCEL_S, ReadGuard, check_before_statement
from services.common.db.wal_checkpoints import WalCheckpointer
from services.common.db.write_lock import WriteQueue
from services.common.errors import DeadlineExceeded, Unavailable
from services.common.fair_queue import FairQueue

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and route it to psycopg 3, the driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _regexp(pattern: str, value: str | None) -> bool:
    return name_patterns.search(pattern, value)


def _sqlite_engine(url: str, *, begin: str, autocheckpoint: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:  # a WalCheckpointer thread takes them (wal_checkpoints.py)
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()
        # REGEXP in linear time (SQLAlchemy's default is Python's backtracking re).
        dbapi_connection.create_function("regexp", 2, _regexp, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


def make_engines(
    url: str, *, pool_size: int = 5, autocheckpoint: bool = True
) -> tuple[Engine, Engine]:
    """(writer, reader) engines for ``url``; the same engine twice outside SQLite.
    ``autocheckpoint``: whether SQLite's commits checkpoint its log (see wal_checkpoints)."""
    url = normalise_url(url)
    if is_sqlite(url):
        return (
            _sqlite_engine(url, begin="BEGIN IMMEDIATE", autocheckpoint=autocheckpoint),
            _sqlite_engine(url, begin="BEGIN", autocheckpoint=autocheckpoint),
        )
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return engine, engine


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database (none in memory or elsewhere)."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


def _write_queue(url: str) -> WriteQueue | None:
    """The cross-process writer queue of a SQLite file (none in memory or elsewhere)."""
    database = _sqlite_file(url)
    return None if database is None else WriteQueue(database)


class Database:
    """Runs units of work in worker threads and turns connection loss into ``Unavailable``."""

    def __init__(
        self,
        url: str,
        *,
        writers: int | None = None,
        readers: int = 4,
        read_timeout: float | None = None,
        fair_reads: bool = False,
        reads_per_tenant: int | None = None,
        wal_checkpoints: timedelta | None = None,
    ) -> None:
        """``read_timeout``: seconds after which a read is stopped (None: no limit).
        ``fair_reads``: the read threads go round the projects that wait for one
        (services.common.context.tenant_var), instead of first come, first served, and one
        project holds at most ``reads_per_tenant`` of them (default: half).
        ``wal_checkpoints``: on a SQLite file, checkpoint its log this often on a thread of
        this Database's, never in a commit (None: SQLite's own, at commit time)."""
        self.read_timeout = read_timeout
        # the threads a project may not hold stay free for the next project
        share = reads_per_tenant or max(1, readers // 2)
        self._fair = FairQueue(readers, per_tenant=min(share, readers)) if fair_reads else None
        self.url = normalise_url(url)
        self.is_sqlite = is_sqlite(self.url)
        # SQLite has one writer at a time whatever we do: more writer threads only contend.
        writers = writers if writers is not None else (1 if self.is_sqlite else 4)
        database_file = _sqlite_file(self.url)
        self._checkpointer = (
            WalCheckpointer(database_file, every=wal_checkpoints)
            if database_file is not None and wal_checkpoints is not None
            else None
        )
        self.writer, self.reader = make_engines(
            self.url,
            pool_size=max(writers, readers),
            autocheckpoint=self._checkpointer is None,
        )
        if self._checkpointer is not None:
            self._checkpointer.start()
        event.listen(self.reader, "before_cursor_execute", check_before_statement)
        self._write_queue = _write_queue(self.url)
        self._write_pool = ThreadPoolExecutor(writers, thread_name_prefix="db-write")
        self._writing = 0
        self._writing_lock = threading.Lock()
        self._read_pool = ThreadPoolExecutor(readers, thread_name_prefix="db-read")

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write unit of work in the calling thread: commit on success, roll back on error."""
        with self._queued(), self._open(), _translate_errors(), self.writer.begin() as connection:
            yield connection

    @property
    def writing(self) -> bool:
        """A write transaction of this process holds the writer (on SQLite, the one there is)."""
        return self._writing > 0

    @contextlib.contextmanager
    def _open(self) -> Iterator[None]:
        with self._writing_lock:
            self._writing += 1
        try:
            yield
        finally:
            with self._writing_lock:
                self._writing -= 1

    def _queued(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self._write_queue is None else self._write_queue.held()

    @contextlib.contextmanager
    def begin_read(self) -> Iterator[Connection]:
        with _translate_errors(), self.reader.begin() as connection:
            yield connection

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction on a database thread. A transaction that
        PostgreSQL aborts to break a deadlock (or a serialisation failure) is run again from
        the start, so ``work`` must build all its state inside (it does: plain functions)."""

        def run() -> T:
            for attempt in range(1, DEADLOCK_RETRIES + 1):
                try:
                    with self.begin() as connection:
                        return work(connection)
                except DBAPIError as exc:
                    if not _is_retryable(exc) or attempt == DEADLOCK_RETRIES:
                        raise
                    time.sleep(0.01 * attempt * (1 + random.random()))
            raise AssertionError("unreachable")

        return await asyncio.get_running_loop().run_in_executor(self._write_pool, run)

    async def read(self, work: Callable[[Connection], T], *, timeout: float | None = None) -> T:
        """Run ``work`` in a read transaction on a database thread. It is stopped (and its
        thread and connection freed) when it runs longer than ``timeout`` seconds (default:
        the database's ``read_timeout``) or when the awaiting task is cancelled, e.g. because
        the RPC it serves ended; a stopped read raises DeadlineExceeded."""
        limit = timeout if timeout is not None else self.read_timeout
        guard = ReadGuard(time.monotonic() + limit if limit else None)

        def run() -> T:
            try:
                with self.begin_read() as connection:
                    guard.attach(connection, sqlite=self.is_sqlite)
                    try:
                        return work(connection)
                    finally:
                        guard.detach()
            except (DBAPIError, Unavailable, TimeoutError) as exc:  # TimeoutError: its check
                if guard.tripped:
                    raise DeadlineExceeded(
                        "the query ran past its time limit and was stopped"
                    ) from exc
                raise

        if self._fair is None:
            return await self._run_read(run, guard)
        async with self._fair.slot(tenant_var.get()):
            return await self._run_read(run, guard)

    async def _run_read(self, run: Callable[[], T], guard: ReadGuard) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._read_pool, run)
        try:
            return await future
        except asyncio.CancelledError:
            guard.cancel()
            if not self.is_sqlite:
                _keep_cancelling(loop, guard)
            raise

    async def ping(self) -> bool:
        try:
            await self.read(lambda c: c.exec_driver_sql("SELECT 1").scalar())
        except Unavailable:
            return False
        return True

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._write_pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)
        self.writer.dispose()
        self.reader.dispose()
        if self._write_queue is not None:
            self._write_queue.close()


def _keep_cancelling(loop: asyncio.AbstractEventLoop, guard: ReadGuard, left: int = 100) -> None:
    """Re-send a PostgreSQL cancel until the read lets go of its connection (one sent before
    its statement reached the server is ignored by the server)."""

    def again() -> None:
        guard.cancel()
        _keep_cancelling(loop, guard, left - 1)

    if guard.attached and left > 0:
        loop.call_later(RECANCEL_S, again)


DEADLOCK_RETRIES = 5
# deadlock_detected, serialization_failure
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _is_retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        if _is_retryable(exc):
            raise
        raise Unavailable(f"database unavailable: {exc.orig}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable(f"database connection lost: {exc.orig}") from exc
        raise
