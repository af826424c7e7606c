"""A database read stops when its time is up or its caller goes away, and frees its thread:
on SQLite (progress handler) and PostgreSQL (statement_timeout, cancel request)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, text

from services.common.db.engine import Database
from services.common.db.read_guard import guarded
from services.common.errors import DeadlineExceeded

pytestmark = pytest.mark.timeout(60)

# Counts to a billion: minutes of work for either database, unless stopped.
ENDLESS = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
    "WHERE i < 1000000000) SELECT count(*) FROM n",
    "postgresql": "SELECT count(*) FROM generate_series(1, 1000000000)",
}


def endless(connection: Connection) -> object:
    return connection.execute(text(ENDLESS[connection.dialect.name])).scalar()


def one(connection: Connection) -> object:
    return connection.execute(text("SELECT 1")).scalar()


async def cancel_once_started(
    db: Database, work: Callable[[Connection], object], started: threading.Event
) -> None:
    """Cancel a read of ``work`` once it has started; then the database's one read thread
    must be free for the next read."""
    task = asyncio.create_task(db.read(work))
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.wait_for(db.read(one), 10) == 1


async def test_a_read_past_its_time_is_stopped(database_url: str) -> None:
    db = Database(database_url, readers=1)
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await db.read(endless, timeout=0.3)
        assert time.monotonic() - started < 10
        # the one read thread (and its connection) is free again
        assert await asyncio.wait_for(db.read(one), 10) == 1
    finally:
        db.close()


async def test_a_cancelled_read_frees_its_thread(database_url: str) -> None:
    db = Database(database_url, readers=1)
    try:
        started = threading.Event()

        def flagged(connection: Connection) -> object:
            started.set()
            return endless(connection)

        # with one read thread, the next read waits behind the endless query unless stopped
        await cancel_once_started(db, flagged, started)
    finally:
        db.close()


async def test_the_database_read_timeout_applies_by_default(sqlite_url: str) -> None:
    db = Database(sqlite_url, readers=1, read_timeout=0.3)
    try:
        with pytest.raises(DeadlineExceeded):
            await db.read(endless)
        assert await db.read(one, timeout=5) == 1
    finally:
        db.close()


async def test_a_read_whose_time_ran_out_before_a_statement_is_a_deadline(
    sqlite_url: str,
) -> None:
    """The guard refuses the next statement once the time is up (a read waiting its turn
    for a thread, or doing work between statements): DEADLINE_EXCEEDED, never an internal
    error (it was: the refused statement closed the connection the guard then detached)."""
    db = Database(sqlite_url, readers=1)
    try:
        passed = threading.Event()

        def late(connection: Connection) -> object:
            one(connection)
            passed.wait(0.5)  # past the deadline, between two statements
            return one(connection)

        with pytest.raises(DeadlineExceeded):
            await db.read(late, timeout=0.1)
        assert await db.read(one, timeout=5) == 1
    finally:
        db.close()


async def test_a_cancelled_read_stops_at_its_next_checkpoint_while_decoding(
    database_url: str,
) -> None:
    """Decoding rows in Python runs no statement, so only the checkpoints a large read calls
    between slices (services.common.db.read_guard.guarded) can stop it: a read whose caller
    went away used to decode every row it had fetched, holding its thread meanwhile."""
    db = Database(database_url, readers=1)
    try:
        started, slices = threading.Event(), []

        def decoding(connection: Connection) -> object:
            checkpoint = guarded(connection, lambda: None)
            for n in range(1_000_000):  # each slice of rows a few milliseconds of Python
                if n == 1:
                    started.set()
                time.sleep(0.002)
                slices.append(n)
                checkpoint()
            return len(slices)

        await cancel_once_started(db, decoding, started)
        assert len(slices) < 1000
    finally:
        db.close()
