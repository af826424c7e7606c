"""The errors novactl reports itself, with the exit status each one means."""

from __future__ import annotations


class CliError(Exception):
    """A usage problem (bad option, bad config file): exit status 2."""

    status = 2
    # Shown before the message, as the status code of a failed call is.
    code = ""

    def report(self) -> str:
        return f"error: {self.code}: {self}" if self.code else f"error: {self}"


class NotFound(CliError):
    """A name or id that matches no resource: exit status 1, as a failed call."""

    status = 1
    code = "NOT_FOUND"


class Ambiguous(NotFound):
    """A name that several resources share; the message lists their ids. The api answers an
    ambiguous image name the same way."""

    code = "INVALID_ARGUMENT"
