"""What every service's ``__main__`` shares: parse settings, log, run until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TypeVar

from services.common.app import RunningService
from services.common.config import ConfigError, load_settings
from services.common.gc_tuning import tune_collector
from services.common.logging_setup import configure_logging
from services.common.rpc.server import stop_event_on_signals
from services.common.service_settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)

log = logging.getLogger(__name__)


def write_ready_file(path: str, address: str) -> None:
    """Atomically publish the bound address (tests and launchers wait for this file)."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    temporary.write_text(address + "\n")
    os.replace(temporary, target)


def main_for(
    settings_type: type[S],
    start: Callable[[S], Coroutine[object, object, RunningService]],
    *,
    prog: str,
    description: str,
    log_name: Callable[[S], str],
    argv: Sequence[str] | None = None,
) -> int:
    try:
        settings = load_settings(settings_type, argv, prog=prog, description=description)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        configure_logging(log_name(settings), settings.log_level, settings.log_format)
        stop = stop_event_on_signals()
        try:
            service = await start(settings)
        except Exception as exc:  # a dependency refused us at start: say which, plainly
            log.error("%s cannot start: %s", prog, exc)
            return 1
        tune_collector(young_objects=settings.gc_young_objects)
        write_ready_file(settings.ready_file, service.address)
        await stop.wait()
        await service.stop()
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run())
    return 0
