"""The errors novactl reports itself, with the exit status each one means."""

from __future__ import annotations


class CliError(Exception):
    """A usage problem (bad option, bad config file): exit status 2."""

    status = 2


class NotFound(CliError):
    """A name or id that matches no resource, or several: exit status 1, as a failed call."""

    status = 1


class Ambiguous(NotFound):
    """A name that several resources share; the message lists their ids."""
