"""Global options, accepted anywhere on the command line (``novactl server list -o json`` as
well as ``novactl -o json server list``), as kubectl and openstackclient accept them.

argparse only knows an option at the level it was declared on, so every sub-command parser
gets a copy of the global options that stores into a ``leaf_`` destination without a default;
``merge`` then lets a value given after the sub-command win over one given before it
(``-c`` values add up).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from services.cli.output import FORMATS, Format, SortKey, View

LEAF = "leaf_"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    dest: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    default: Any = None


OPTIONS = (
    Option(
        ("--endpoint",),
        "endpoint",
        {
            "help": "api address: host:port or https://host:port (TLS), http://host:port "
            "(plaintext) [env NOVACTL_ENDPOINT]"
        },
    ),
    Option(("--token",), "token", {"help": "bearer token [env NOVACTL_TOKEN]"}),
    Option(
        ("--cacert",),
        "cacert",
        {
            "metavar": "PEM",
            "help": "the CA a TLS endpoint is verified against; default: the system's roots "
            "[env NOVACTL_CACERT]",
        },
    ),
    Option(
        ("--insecure",),
        "insecure",
        {
            "action": "store_true",
            "help": "plaintext even for a host:port endpoint (http:// says so too)",
        },
        default=False,
    ),
    Option(("--config",), "config", {"help": "config file [env NOVACTL_CONFIG]"}),
    Option(
        ("--profile",),
        "profile",
        {"help": "a [profiles.NAME] of the config file [env NOVACTL_PROFILE]"},
    ),
    Option(
        ("-o", "--output", "-f", "--format"),
        "output",
        {"choices": FORMATS, "help": "table (default), wide, value, json or yaml"},
        default="table",
    ),
    Option(
        ("-c", "--column"),
        "column",
        {
            "action": "append",
            "metavar": "COLUMN",
            "help": "show this column (repeatable; default: the usual ones)",
        },
        default=[],
    ),
    Option(
        ("--sort", "--sort-by", "--sort-column"),
        "sort",
        {
            "action": "append",
            "metavar": "COLUMN[:asc|desc]",
            "help": "order a list by this column (repeatable)",
        },
        default=[],
    ),
    Option(
        ("--timeout",), "timeout", {"type": float, "help": "per-call deadline (s)"}, default=30.0
    ),
    Option(
        ("--chunk-size",),
        "chunk_size",
        {
            "type": int,
            "metavar": "N",
            "help": "list in calls of N items (as kubectl's --chunk-size; default: the api's "
            "page size); lists are still shown whole",
        },
        default=0,
    ),
    Option(
        ("--retries",),
        "retries",
        {
            "type": int,
            "metavar": "N",
            "help": "send a rate-limited call again up to N times, each after the delay the "
            "api asks for (at most 10s)",
        },
        default=3,
    ),
)


def add_global(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("global options (accepted anywhere on the line)")
    for option in OPTIONS:
        group.add_argument(*option.flags, dest=option.dest, default=option.default,
                           **option.kwargs)  # fmt: skip


def add_to_subcommands(root: argparse.ArgumentParser) -> None:
    """Give every parser under ``root`` the global options (hidden from its --help)."""
    for parser in _descendants(root):
        # A sub-command's own option keeps its flag there (``server console-log -f`` follows,
        # as ``kubectl logs -f``); the global option keeps its other spellings.
        taken = set(parser._option_string_actions)
        for option in OPTIONS:
            flags = [flag for flag in option.flags if flag not in taken]
            if not flags:
                continue
            kwargs = {**option.kwargs, "help": argparse.SUPPRESS}
            parser.add_argument(*flags, dest=LEAF + option.dest,
                                default=argparse.SUPPRESS, **kwargs)  # fmt: skip


def _descendants(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    seen: set[int] = set()
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            if id(child) in seen:  # an alias names the same parser
                continue
            seen.add(id(child))
            yield child
            yield from _descendants(child)


def merge(args: argparse.Namespace) -> argparse.Namespace:
    """Fold the values given after a sub-command into the global ones."""
    for option in OPTIONS:
        leaf = LEAF + option.dest
        if not hasattr(args, leaf):
            continue
        value = getattr(args, leaf)
        delattr(args, leaf)
        if option.kwargs.get("action") == "append":
            value = [*getattr(args, option.dest), *value]
        setattr(args, option.dest, value)
    return args


def view(args: argparse.Namespace) -> View:
    columns = tuple(c for given in args.column for c in given.split(",") if c)
    sort = tuple(SortKey.parse(s) for given in args.sort for s in given.split(",") if s)
    return View(format=Format(args.output), columns=columns, sort=sort)
