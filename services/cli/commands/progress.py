"""The ``--wait`` progress line: rewritten in place on a terminal, plain lines otherwise.

Carriage returns only make sense to a terminal; in a log file or a CI console they pile up
into one unreadable line, so there each new state of the counts is a line of its own.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Progress:
    stream: TextIO
    enabled: bool
    terminal: bool
    last: str = field(default="", init=False)

    @classmethod
    def to_stderr(cls, *, enabled: bool) -> Progress:
        return cls(sys.stderr, enabled, sys.stderr.isatty())

    def show(self, label: str, counts: Counter[str]) -> None:
        line = f"[{label}] " + " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        if not self.enabled or line == self.last:
            return
        self.last = line
        if self.terminal:
            self.stream.write(f"\r{line}   ")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.terminal and self.last:
            self.stream.write("\n")
            self.stream.flush()
