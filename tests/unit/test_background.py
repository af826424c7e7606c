from __future__ import annotations

import asyncio
import logging

import pytest

from services.common.background import BackgroundTask

pytestmark = pytest.mark.timeout(10)


async def test_close_cancels_and_waits_for_the_task_to_end() -> None:
    started = asyncio.Event()
    cleaned_up = asyncio.Event()

    async def run() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits: close must wait for it
            cleaned_up.set()

    task = BackgroundTask("t", run)
    task.start()
    await started.wait()
    assert task.running
    await task.close()
    assert cleaned_up.is_set()
    assert not task.running


async def test_start_twice_runs_one_task() -> None:
    runs = 0
    started = asyncio.Event()

    async def run() -> None:
        nonlocal runs
        runs += 1
        started.set()
        await asyncio.Event().wait()

    task = BackgroundTask("t", run)
    task.start()
    task.start()
    await started.wait()
    await task.close()
    assert runs == 1


async def test_close_before_start_does_nothing() -> None:
    async def run() -> None:
        raise AssertionError("never started")

    await BackgroundTask("t", run).close()


async def test_a_task_that_dies_is_logged_at_once_and_its_error_raised_by_close() -> None:
    logged = asyncio.Event()
    records: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            logged.set()

    async def run() -> None:
        raise RuntimeError("boom")

    logger = logging.getLogger("services.common.background")
    handler = Catch(logging.ERROR)
    logger.addHandler(handler)
    try:
        task = BackgroundTask("dying", run)
        task.start()
        await logged.wait()  # logged when it died, before anyone closes it
    finally:
        logger.removeHandler(handler)
    assert records[0].getMessage() == "background task dying died"
    with pytest.raises(RuntimeError, match="boom"):
        await task.close()
