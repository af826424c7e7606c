"""Typed, frozen settings: defaults < TOML file < environment < command-line flags.

Each service declares one frozen dataclass whose fields carry a default and a help line
(``setting(...)``). ``load_settings`` builds the command-line parser from those fields, so the
flags, the environment variables and the settings reference can never drift apart.

Durations are ``timedelta`` fields; in a file, the environment and on the command line they
are given in seconds (a number), as they always were.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "NOVA_GRPC_"

S = TypeVar("S")


class ConfigError(ValueError):
    """A setting has a value the service cannot start with."""


def setting(default: Any, help: str) -> Any:
    """Declare a settings field with its default and the help line users see."""
    if isinstance(default, list):
        raise TypeError("use a tuple for sequence defaults: settings are immutable")
    return dataclasses.field(default=default, metadata={"help": help})


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _field_type(cls: type, field: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[field.name]


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("a boolean is not an integer")
    return int(raw)


def _parse_duration(raw: Any) -> timedelta:
    """Seconds (a number, or its text) -> timedelta."""
    if isinstance(raw, timedelta):
        return raw
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a duration")
    return timedelta(seconds=float(raw))


def seconds(value: timedelta) -> str:
    """A duration as users write it (seconds), for help texts and the settings reference."""
    return str(value.total_seconds())


def _parse_tuple(raw: Any) -> tuple[str, ...]:
    items = [i.strip() for i in raw.split(",")] if isinstance(raw, str) else list(raw)
    return tuple(str(item) for item in items if str(item))


_SCALARS: dict[Any, Any] = {
    bool: _parse_bool,
    int: _parse_int,
    float: float,
    str: str,
    timedelta: _parse_duration,
}


def _parse_value(kind: Any, raw: Any, name: str) -> Any:
    """Turn a raw value (str from env/flags, or a TOML value) into the field's type."""
    origin = typing.get_origin(kind)
    try:
        if kind in _SCALARS:
            return _SCALARS[kind](raw)
        if origin is tuple:
            return _parse_tuple(raw)
        if origin in (typing.Union, types.UnionType):
            if raw is None or raw == "":
                return None
            inner = next(a for a in typing.get_args(kind) if a is not type(None))
            return _parse_value(inner, raw, name)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: {exc}") from exc
    raise ConfigError(f"setting {name}: unsupported type {kind!r}")


def describe(cls: type) -> list[tuple[str, str, str, str, str]]:
    """(name, flag, environment variable, default, help) for every setting of ``cls``."""
    rows = []
    for field in dataclasses.fields(cls):
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        if isinstance(default, tuple):
            shown = ",".join(default)
        elif isinstance(default, timedelta):
            shown = seconds(default)
        else:
            shown = str(default)
        rows.append(
            (field.name, flag_name(field.name), env_name(field.name), shown, field.metadata["help"])
        )
    return rows


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config-file",
        help=f"TOML file with settings (keys as the flag names with underscores); "
        f"environment: {ENV_PREFIX}CONFIG_FILE",
    )
    for name, flag, env, default, help_text in describe(cls):
        shown = f"{help_text} [env {env}; default {default!r}]".replace("%", "%%")
        parser.add_argument(flag, dest=name, default=None, help=shown)  # argparse %-formats help
    return parser


def load_settings(
    cls: type[S],
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    prog: str = "nova-grpc",
    description: str = "",
) -> S:
    """Resolve every field of ``cls``: defaults < config file < environment < flags."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a settings dataclass")
    environ = os.environ if environ is None else environ
    parser = build_parser(cls, prog, description)
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    config_file = args.config_file or environ.get(ENV_PREFIX + "CONFIG_FILE")
    known = {f.name: f for f in dataclasses.fields(cls)}
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from exc
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"config file {config_file}: unknown setting {key!r}")
            values[key] = _parse_value(_field_type(cls, known[key]), raw, key)
    for name, field in known.items():
        if env_name(name) in environ:
            values[name] = _parse_value(_field_type(cls, field), environ[env_name(name)], name)
        flag_value = getattr(args, name)
        if flag_value is not None:
            values[name] = _parse_value(_field_type(cls, field), flag_value, name)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def require(condition: bool, name: str, message: str) -> None:
    """Validation helper for ``__post_init__``: raise a ConfigError naming the setting."""
    if not condition:
        raise ConfigError(f"setting {name}: {message}")
