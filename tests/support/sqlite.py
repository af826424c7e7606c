"""Copies of a migrated SQLite database: migrating takes a while, so a test session migrates
once (the ``migrated_sqlite`` fixture) and every test or module works on a copy."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def copy_database(source: Path, target: Path) -> str:
    """Copy the database ``source`` to ``target`` with SQLite's backup (whole even if a
    write-ahead log is open); the copy's URL."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return f"sqlite:///{target}"
