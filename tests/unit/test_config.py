from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from services.api.settings import ApiSettings
from services.common.config import (
    ConfigError,
    build_parser,
    describe,
    load_settings,
    require,
    setting,
)
from services.compute.settings import ComputeSettings
from services.conductor.settings import ConductorSettings


@dataclass(frozen=True)
class Example:
    listen: str = setting("127.0.0.1:1", "where")
    workers: int = setting(2, "how many")
    verbose: bool = setting(False, "chatty")
    peers: tuple[str, ...] = setting(("a:1",), "peers")
    grace: timedelta = setting(timedelta(seconds=1.5), "how long")

    def __post_init__(self) -> None:
        require(self.workers > 0, "workers", "must be > 0")


def test_defaults_apply_without_any_source() -> None:
    assert load_settings(Example, [], environ={}) == Example()


def test_precedence_is_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('workers = 3\nlisten = "file:1"\npeers = ["x:1", "y:2"]\n')
    env = {"NOVA_GRPC_WORKERS": "4", "NOVA_GRPC_VERBOSE": "yes"}
    settings = load_settings(Example, ["--config-file", str(config), "--workers", "5"], environ=env)
    assert settings == Example(listen="file:1", workers=5, verbose=True, peers=("x:1", "y:2"))


def test_comma_separated_tuples_from_environment() -> None:
    settings = load_settings(Example, [], environ={"NOVA_GRPC_PEERS": "a:1, b:2,"})
    assert settings.peers == ("a:1", "b:2")


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers"):
        load_settings(Example, ["--workers", "many"], environ={})
    with pytest.raises(ConfigError, match="workers: must be > 0"):
        load_settings(Example, ["--workers", "0"], environ={})
    with pytest.raises(ConfigError, match="verbose"):
        load_settings(Example, [], environ={"NOVA_GRPC_VERBOSE": "perhaps"})
    config = tmp_path / "c.toml"
    config.write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'nonsense'"):
        load_settings(Example, ["--config-file", str(config)], environ={})


def test_every_service_setting_has_help_and_an_environment_name() -> None:
    for settings_type in (ApiSettings, ComputeSettings):
        for name, flag, env, _default, help_text in describe(settings_type):
            assert help_text, name
            assert flag == "--" + name.replace("_", "-")
            assert env == "NOVA_GRPC_" + name.upper()


def test_internal_tls_is_required_unless_plaintext_is_asked_for() -> None:
    with pytest.raises(ConfigError, match="internal_tls_ca: required for mutual TLS"):
        load_settings(ComputeSettings, [], environ={})
    plain = load_settings(ComputeSettings, ["--insecure-internal", "true"], environ={})
    assert plain.internal_tls() is None


def test_compute_settings_reject_an_unknown_virt_type() -> None:
    with pytest.raises(ConfigError, match="virt_type"):
        load_settings(
            ComputeSettings, ["--virt-type", "xen", "--insecure-internal", "1"], environ={}
        )
    with pytest.raises(ConfigError, match="instance_name_template"):
        load_settings(
            ComputeSettings,
            ["--instance-name-template", "%(nope)s", "--insecure-internal", "1"],
            environ={},
        )


def test_a_negative_shutdown_grace_is_refused() -> None:
    plain = ["--insecure-internal", "1", "--shutdown-grace-seconds", "-1"]
    for settings_type, argv in (
        (ApiSettings, [*plain, "--conductor-addresses", "127.0.0.1:1"]),
        (ConductorSettings, plain),
    ):
        with pytest.raises(ConfigError, match="shutdown_grace_seconds: must be >= 0"):
            load_settings(settings_type, argv, environ={})


def test_every_service_prints_its_help() -> None:
    for settings_type in (ApiSettings, ConductorSettings, ComputeSettings):
        text = build_parser(settings_type, "x", "y").format_help()
        assert "--listen" in text and "NOVA_GRPC_LISTEN" in text
    assert "instance-%08x" in build_parser(ComputeSettings, "x", "y").format_help()


def test_durations_are_given_in_seconds_and_held_as_timedelta(tmp_path: Path) -> None:
    assert load_settings(Example, ["--grace", "0.25"], environ={}).grace == timedelta(seconds=0.25)
    from_env = load_settings(Example, [], environ={"NOVA_GRPC_GRACE": "3"})
    assert from_env.grace == timedelta(seconds=3)
    config = tmp_path / "c.toml"
    config.write_text("grace = 90\n")
    loaded = load_settings(Example, ["--config-file", str(config)], environ={})
    assert loaded.grace == timedelta(minutes=1.5)
    with pytest.raises(ConfigError, match="grace"):
        load_settings(Example, ["--grace", "soon"], environ={})
    config.write_text("grace = true\n")
    with pytest.raises(ConfigError, match="grace"):
        load_settings(Example, ["--config-file", str(config)], environ={})
    (row,) = [r for r in describe(Example) if r[0] == "grace"]
    assert row[3] == "1.5"  # the reference shows seconds, as users write them
