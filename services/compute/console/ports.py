"""What the console use cases need from the hypervisor: where an instance's console log is,
and a byte stream to its serial port."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ConsoleSink(Protocol):
    """Receives a session's output. Called from the hypervisor's own thread, never from the
    event loop: implementations hand over and return at once."""

    def data(self, chunk: bytes) -> None: ...

    def ended(self, reason: str) -> None:
        """The guest side closed (the domain stopped, or another session took it over)."""


class ConsoleHandle(Protocol):
    """One open session with a guest's serial port. Blocking calls: run them off the loop."""

    def send(self, data: bytes) -> None:
        """Type ``data`` into the guest; raises ConsoleClosed when the session has ended."""

    def pause(self, paused: bool) -> None:
        """Stop (True) or resume (False) reading output: the consumer is behind."""

    def close(self) -> None:
        """End the session and free everything it holds. Idempotent."""


class ConsoleClosed(Exception):
    """The session ended before (or while) the data could be sent."""


class ConsoleHypervisor(Protocol):
    def console_log(self, uuid: str) -> Path:
        """The instance's console log file. Raises WrongState when this hypervisor keeps
        none (libvirt's test driver has no guest), NotFound when the host lacks it."""

    def open_console(self, uuid: str, sink: ConsoleSink) -> ConsoleHandle:
        """Attach to the guest's serial console, taking it over from any other session.
        Raises WrongState when the guest does not run or the hypervisor has no console,
        NotFound when the host lacks it."""
