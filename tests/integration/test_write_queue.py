"""SQLite writers queue on a lock file beside the database, across threads and processes."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from services.common.db.engine import Database
from services.common.db.write_lock import WriteQueue

HOLD_IN_CHILD = """
import sys
from pathlib import Path
from services.common.db.write_lock import WriteQueue
with WriteQueue(Path(sys.argv[1])).held():
    print("held", flush=True)
    sys.stdin.readline()
"""


def _is_locked(lock_file: Path) -> bool:
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_write_unit_of_work_holds_the_queue_until_it_commits(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    lock_file = Path(db.writer.url.database or "").resolve().with_name("nova.sqlite.write-lock")
    try:
        with db.begin() as connection:
            connection.exec_driver_sql("SELECT 1")
            assert _is_locked(lock_file)
        assert not _is_locked(lock_file)
        with pytest.raises(RuntimeError), db.begin():
            raise RuntimeError("rolled back")
        assert not _is_locked(lock_file), "a rollback must release the queue too"
    finally:
        db.close()


def test_a_writer_in_another_process_waits_for_the_holder(tmp_path: Path) -> None:
    database = tmp_path / "nova.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_CHILD, str(database)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    queue = WriteQueue(database)
    got_it = threading.Event()
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "held"

        def take() -> None:
            with queue.held():
                got_it.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not got_it.wait(0.3), "the queue was taken while another process held it"
        child.stdin.write("\n")
        child.stdin.flush()
        assert got_it.wait(10), "the queue was not handed over when the holder let go"
        taker.join(10)
    finally:
        child.kill()
        child.wait(10)
        queue.close()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    queue = WriteQueue(tmp_path / "nova.sqlite")
    inside = 0
    most_inside = 0
    guard = threading.Lock()

    def write() -> None:
        nonlocal inside, most_inside
        for _ in range(200):
            with queue.held():
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    queue.close()
    assert most_inside == 1
