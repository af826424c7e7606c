"""SQLite's log checkpointed on a thread of its own, never inside a commit."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from services.common.db.engine import Database
from services.common.db.wal_checkpoints import WalCheckpointer

pytestmark = pytest.mark.timeout(60)


def database_file(url: str) -> Path:
    return Path(str(make_url(url).database))


def log_frames(path: Path) -> int:
    """Frames in the write-ahead log now (a checkpoint that copies nothing says so)."""
    connection = sqlite3.connect(path)
    try:
        _busy, frames, _copied = connection.execute("PRAGMA wal_checkpoint(NOOP)").fetchone()
    except sqlite3.OperationalError:  # older SQLite: no NOOP mode
        pytest.skip("this SQLite has no wal_checkpoint(NOOP)")
    finally:
        connection.close()
    return int(frames)


def autocheckpoint(connection: Connection) -> int:
    return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def fill(connection: Connection) -> None:
    connection.execute(text("CREATE TABLE IF NOT EXISTS filler (x BLOB)"))
    connection.execute(
        text("INSERT INTO filler VALUES (:x)"), [{"x": b"x" * 3000} for _ in range(1500)]
    )


async def test_commits_no_longer_checkpoint_and_the_thread_does(sqlite_url: str) -> None:
    db = Database(sqlite_url, wal_checkpoints=timedelta(hours=1))  # the thread waits: we call
    try:
        assert await db.read(autocheckpoint) == 0
        await db.write(fill)  # ~1,500 pages: past SQLite's 1,000-page checkpoint at commit
        path = database_file(sqlite_url)
        assert log_frames(path) >= 1000  # the commit left the log as it was
        checkpointer = WalCheckpointer(path, every=timedelta(hours=1))
        frames, copied = await asyncio.to_thread(checkpointer.checkpoint_once)
        assert frames >= 1000 and copied == frames
    finally:
        db.close()


async def test_without_the_setting_sqlite_checkpoints_at_commit(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        assert await db.read(autocheckpoint) == 1000
    finally:
        db.close()


async def test_the_thread_copies_the_log_on_its_own(
    sqlite_url: str,
) -> None:
    db = Database(sqlite_url, wal_checkpoints=timedelta(milliseconds=20))
    path = database_file(sqlite_url)
    try:
        await db.write(fill)
        for _ in range(500):  # the thread's next pass copies what the commit left
            connection = sqlite3.connect(path)
            try:
                _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(NOOP)").fetchone()
            finally:
                connection.close()
            if frames >= 1000 and copied == frames:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the checkpoint thread did not copy the log")
    finally:
        db.close()
