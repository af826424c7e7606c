"""What the console use cases need from the hypervisor: where an instance's console log is,
and (for interactive sessions) a byte stream to its serial port."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ConsoleHypervisor(Protocol):
    def console_log(self, uuid: str) -> Path:
        """The instance's console log file. Raises WrongState when this hypervisor keeps
        none (libvirt's test driver has no guest), NotFound when the host lacks it."""
