"""What a guest's serial console gives back, as the console client hands it to the api's use
case (a plain value, so that the use case imports no gRPC)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConsoleText:
    output: bytes
    truncated: bool
