"""A hand-written double of the console port for tests that have no guest: each session
echoes what is typed (as a shell's terminal would), from another thread as libvirt does,
and takes over an earlier session on the same instance as libvirt's force flag does."""

from __future__ import annotations

import threading
from pathlib import Path

from services.common.errors import NotFound, WrongState
from services.compute.console.ports import ConsoleClosed, ConsoleSink


class EchoHandle:
    def __init__(self, owner: EchoConsoles, uuid: str, sink: ConsoleSink) -> None:
        self.owner = owner
        self.uuid = uuid
        self.sink = sink
        self.closed = False
        self.ended = False

    def send(self, data: bytes) -> None:
        if self.closed or self.ended:
            raise ConsoleClosed("the console session has ended")
        echo = threading.Thread(target=self.sink.data, args=(data,))
        echo.start()
        echo.join()

    def pause(self, paused: bool) -> None:
        self.owner.pauses.append(paused)

    def end(self, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self.sink.ended(reason)

    def close(self) -> None:
        with self.owner.lock:
            if not self.closed:
                self.closed = True
                self.owner.open_handles -= 1


class EchoConsoles:
    def __init__(self, root: Path, *, known: set[str] | None = None) -> None:
        self.root = root
        self.known = known  # None: every uuid is a running guest
        self.lock = threading.Lock()
        self.current: dict[str, EchoHandle] = {}
        self.open_handles = 0
        self.opened = 0
        self.pauses: list[bool] = []
        self.stopped: set[str] = set()

    def _check(self, uuid: str) -> None:
        if self.known is not None and uuid not in self.known:
            raise NotFound("instance", uuid, field="instance_uuid")

    def console_log(self, uuid: str) -> Path:
        self._check(uuid)
        return self.root / uuid / "console.log"

    def open_console(self, uuid: str, sink: ConsoleSink) -> EchoHandle:
        self._check(uuid)
        if uuid.startswith("stopped") or uuid in self.stopped:
            raise WrongState("the server is not running: its console cannot be attached")
        handle = EchoHandle(self, uuid, sink)
        with self.lock:
            previous = self.current.get(uuid)
            self.current[uuid] = handle
            self.open_handles += 1
            self.opened += 1
        if previous is not None:
            previous.end("taken over")
        return handle

    def stop_guest(self, uuid: str) -> None:
        self.stopped.add(uuid)
        self.drop_stream(uuid)

    def drop_stream(self, uuid: str) -> None:
        """The hypervisor ends the stream by itself while the guest runs on."""
        handle = self.current.get(uuid)
        if handle is not None:
            handle.end("the guest's console closed")
