"""The regular expressions ListServers accepts as a name filter, evaluated in linear time.

Python's ``re`` backtracks: a pattern such as ``(a+)+$`` takes exponential time on a name of
a few dozen characters, and holds the GIL (the whole api process) while it does. RE2 (Google's
engine) guarantees time linear in the input and refuses the features that need backtracking
(backreferences, lookaround); its memory is capped too. SQLite's REGEXP is this engine
(engine.py installs it), so the database never runs a backtracking match for a client.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

PATTERN_MAX = 255
# RE2 compiles into a program; bound its memory (and so its size and speed).
PROGRAM_MEMORY = 1 << 20


class BadPattern(ValueError):
    pass


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a client's bad pattern is their error, not our log's
    options.max_mem = PROGRAM_MEMORY
    return options


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern; BadPattern says why it is refused."""
    if len(pattern) > PATTERN_MAX:
        raise BadPattern(f"at most {PATTERN_MAX} characters")
    try:
        return re2.compile(pattern, options=_options())
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args else str(exc)
        raise BadPattern(
            f"not a supported regular expression ({reason}); backreferences and lookaround "
            "are not supported"
        ) from exc


def search(pattern: str, value: str | None) -> bool:
    """SQL REGEXP: whether ``pattern`` matches anywhere in ``value`` (NULL never matches)."""
    if value is None:
        return False
    return compile_pattern(pattern).search(value) is not None
