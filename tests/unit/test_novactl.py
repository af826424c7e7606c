"""novactl without a server: option placement, output formats, name lookup, profiles, progress."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from services.cli import options
from services.cli.__main__ import main, parser
from services.cli.client import Connection, resolve
from services.cli.commands.progress import Progress
from services.cli.commands.watching import events
from services.cli.errors import Ambiguous, CliError, NotFound
from services.cli.lookup import catalog_ref, pick
from services.cli.output import Format, SortKey, View, emit, show_many, to_dict
from services.common.generated.novagrpc.v1 import catalog_pb2, servers_pb2

pytestmark = pytest.mark.timeout(30)


def parse(*argv: str) -> object:
    return options.merge(parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ("-o", "json", "server", "list"),
        ("server", "list", "-o", "json"),
        ("server", "-o", "json", "list"),
        ("--output", "json", "server", "list"),
        ("server", "list", "--format", "json"),
        ("server", "list", "-f", "json"),
    ],
)
def test_global_options_are_accepted_anywhere(argv: tuple[str, ...]) -> None:
    args = parse(*argv)
    assert args.output == "json"  # type: ignore[attr-defined]
    assert args.func.__name__ == "_list"  # type: ignore[attr-defined]


def test_a_sub_command_keeps_its_own_flag_and_the_global_option_its_others() -> None:
    root = argparse.ArgumentParser()
    options.add_global(root)
    logs = root.add_subparsers(dest="command").add_parser("logs")
    logs.add_argument("-f", "--follow", action="store_true")  # as kubectl logs -f
    options.add_to_subcommands(root)  # must not refuse the clash
    args = options.merge(root.parse_args(["logs", "-f", "--format", "json"]))
    assert (args.follow, args.output) == (True, "json")
    assert parse("server", "list", "-f", "yaml").output == "yaml"  # type: ignore[attr-defined]


def test_a_later_global_option_wins_and_columns_add_up() -> None:
    args = parse("-o", "yaml", "--endpoint", "a:1", "-c", "id", "flavor", "list",
                 "-o", "value", "-c", "name", "--endpoint", "b:2")  # fmt: skip
    assert args.output == "value"  # type: ignore[attr-defined]
    assert args.endpoint == "b:2"  # type: ignore[attr-defined]
    assert args.column == ["id", "name"]  # type: ignore[attr-defined]
    view = options.view(args)  # type: ignore[arg-type]
    assert view == View(format=Format.VALUE, columns=("id", "name"))


def test_defaults_when_no_global_option_is_given() -> None:
    args = parse("server", "show", "web")
    assert (args.output, args.column, args.sort, args.timeout) == ("table", [], [], 30.0)  # type: ignore[attr-defined]


def test_old_command_names_are_kept_beside_openstackclient_ones() -> None:
    for argv in (("group", "list"), ("server", "group", "list")):
        assert parse(*argv).func.__name__ == "_list"  # type: ignore[attr-defined]
    for argv in (
        ("keypair", "import", "--name", "k", "--public-key-file", "f"),
        ("keypair", "create", "--public-key", "f", "k"),
    ):
        args = parse(*argv)
        assert args.func.__name__ == "_keypair_create"  # type: ignore[attr-defined]
        assert (args.name_arg or args.name, args.public_key) == ("k", "f")  # type: ignore[attr-defined]
    for argv in (("server", "actions", "web"), ("server", "event", "list", "web")):
        assert parse(*argv).func.__name__ == "_actions"  # type: ignore[attr-defined]
    old = parse("compute-service", "disable", "h1", "--reason", "r")
    new = parse("compute", "service", "set", "--disable", "--disable-reason", "r", "h1")
    for args in (old, new):
        assert (args.host, args.enabled, args.reason) == ("h1", False, "r")  # type: ignore[attr-defined]
    created = parse("server", "create", "web", "--flavor", "f", "--image", "i", "--property",
                    "a=1", "--meta", "b=2", "--min", "2", "--max-count", "3")  # fmt: skip
    assert created.meta == ["a=1", "b=2"]  # type: ignore[attr-defined]
    assert (created.name_arg, created.min_count, created.max_count) == ("web", 2, 3)  # type: ignore[attr-defined]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("novactl ")


def test_completion_scripts_are_generated() -> None:
    for shell in ("bash", "zsh", "fish"):
        out = io.StringIO()
        assert main(["completion", shell], out) == 0
        assert "novactl" in out.getvalue()


def _server(**fields: object) -> servers_pb2.Server:
    return servers_pb2.Server(id="1", name="a", **fields)  # type: ignore[arg-type]


def test_json_carries_every_field_even_at_default_or_unset() -> None:
    plain = to_dict(_server())
    fault = servers_pb2.Fault(code=500, message="x")
    failed = _server(status=servers_pb2.SERVER_STATUS_ERROR, fault=fault)
    assert plain.keys() == to_dict(failed).keys()
    every = {f.name for f in servers_pb2.Server.DESCRIPTOR.fields}
    assert set(plain) == every
    assert plain["fault"] is None and plain["launched_at"] is None
    assert plain["task_state"] == "" and plain["tags"] == [] and plain["metadata"] == {}
    # enum values as users know them, without the prefix the API's names carry
    assert (plain["status"], plain["power_state"]) == ("UNSPECIFIED", "NOSTATE")
    assert to_dict(failed)["status"] == "ERROR"
    running = to_dict(_server(power_state=servers_pb2.POWER_STATE_RUNNING))
    assert running["power_state"] == "RUNNING"
    # a set message field carries every one of its own fields too
    assert set(to_dict(failed)["fault"]) == {"code", "message", "created_at", "details"}


ROWS = [
    {"id": "b", "name": "web", "ram": "512", "meta": {"k": "v"}},
    {"id": "a", "name": "db", "ram": "4096", "meta": {}},
    {"id": "c", "name": "cache", "ram": "64", "meta": {}},
]


def render(view: View, rows: list[dict[str, object]] = ROWS) -> str:
    out = io.StringIO()
    show_many(rows, ("id", "name"), view, out=out)
    return out.getvalue()


def test_table_wide_and_value_formats() -> None:
    table = render(View()).splitlines()
    assert table[0].split() == ["ID", "NAME"] and table[1].split() == ["b", "web"]
    wide = render(View(format=Format.WIDE)).splitlines()
    assert wide[0].split() == ["ID", "NAME", "RAM", "META"]
    assert '{"k": "v"}' in wide[1]
    assert render(View(format=Format.VALUE)).splitlines() == ["b web", "a db", "c cache"]
    chosen = View(format=Format.VALUE, columns=("name", "ram"))
    assert render(chosen).splitlines() == ["web 512", "db 4096", "cache 64"]


def test_json_and_yaml_lists_keep_every_field_and_honour_columns() -> None:
    assert json.loads(render(View(format=Format.JSON))) == ROWS
    assert yaml.safe_load(render(View(format=Format.YAML))) == ROWS
    assert json.loads(render(View(format=Format.JSON, columns=("name",)))) == [
        {"name": "web"}, {"name": "db"}, {"name": "cache"},
    ]  # fmt: skip


def test_sort_by_number_text_and_descending() -> None:
    by_ram = View(format=Format.VALUE, columns=("ram",), sort=(SortKey.parse("ram"),))
    assert render(by_ram).split() == ["64", "512", "4096"]  # numbers, not text
    by_name = View(format=Format.VALUE, columns=("name",), sort=(SortKey.parse("name:desc"),))
    assert render(by_name).split() == ["web", "db", "cache"]
    with pytest.raises(CliError, match="asc or desc"):
        SortKey.parse("name:sideways")
    with pytest.raises(CliError, match="nope"):
        render(View(sort=(SortKey.parse("nope"),)))


def test_an_unknown_column_is_an_error_naming_the_columns() -> None:
    with pytest.raises(CliError, match=r"'nope'.*columns: id, meta, name, ram"):
        render(View(columns=("nope",)))
    with pytest.raises(CliError, match="'nope'"):
        emit(ROWS[0], View(format=Format.JSON, columns=("nope",)), io.StringIO())


def test_one_record_in_each_format() -> None:
    def shown(view: View) -> str:
        out = io.StringIO()
        emit({"id": "a", "name": "db", "fault": None}, view, out)
        return out.getvalue()

    assert shown(View()).splitlines() == ["id     a", "name   db", "fault"]
    assert shown(View(format=Format.VALUE, columns=("name",))) == "db\n"
    assert yaml.safe_load(shown(View(format=Format.YAML)))["fault"] is None


def test_a_name_or_an_id_picks_one_resource() -> None:
    candidates = [("id-1", "web"), ("id-2", "db"), ("id-3", "db"), ("db", "other")]
    assert pick("server", "web", candidates) == "id-1"
    assert pick("server", "id-2", candidates) == "id-2"
    assert pick("server", "db", candidates) == "db"  # an exact id wins over a name
    with pytest.raises(NotFound, match="no server with the id or name 'x'"):
        pick("server", "x", candidates)


def test_an_ambiguous_name_lists_the_candidates() -> None:
    with pytest.raises(NotFound, match=r"'db' is ambiguous: 2 match \(id-2, id-3\)") as error:
        pick("image", "db", [("id-3", "db"), ("id-2", "db")])
    assert error.value.status == 1


class FakeImages:
    def __init__(self, *images: tuple[str, str]) -> None:
        self.images = [catalog_pb2.Image(id=i, name=n) for i, n in images]

    def ListImages(self, request: object) -> catalog_pb2.ListImagesResponse:
        return catalog_pb2.ListImagesResponse(images=self.images)


class FakeClient:
    def __init__(self, images: FakeImages) -> None:
        self.images = images
        self.page_size = 0  # the api's default

    def call(self, method: Callable[[object], object], request: object) -> object:
        return method(request)


def test_a_create_sends_the_image_id_or_leaves_an_unknown_name_to_the_api() -> None:
    client = FakeClient(FakeImages(("i-1", "cirros"), ("i-2", "dup"), ("i-3", "dup")))
    assert catalog_ref(client, "image", "cirros") == "i-1"  # type: ignore[arg-type]
    assert catalog_ref(client, "image", "i-3") == "i-3"  # type: ignore[arg-type]
    assert catalog_ref(client, "image", "unknown") == "unknown"  # type: ignore[arg-type]
    with pytest.raises(Ambiguous, match=r"\(i-2, i-3\)"):
        catalog_ref(client, "image", "dup")  # type: ignore[arg-type]


class Args:
    def __init__(self, config: Path, **flags: str | None) -> None:
        self.config = str(config)
        self.profile = flags.get("profile")
        self.endpoint = flags.get("endpoint")
        self.token = flags.get("token")
        self.cacert = flags.get("cacert")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("NOVACTL_ENDPOINT", "NOVACTL_TOKEN", "NOVACTL_CACERT", "NOVACTL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


CONFIG = f"""
endpoint = "default:1"
token = "default-token"

[profiles.lab]
endpoint = "lab:2"
token_command = "{sys.executable} -c 'print(\\"lab-token\\")'"

[profiles.prod]
endpoint = "prod:443"
token = "prod-token"
ca = "ca.pem"
"""


def test_profiles_choose_endpoint_token_and_ca(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    (tmp_path / "ca.pem").write_bytes(b"PEM")
    assert resolve(Args(config)) == Connection(endpoint="default:1", token="default-token")  # type: ignore[arg-type]
    lab = resolve(Args(config, profile="lab"))  # type: ignore[arg-type]
    assert lab == Connection(endpoint="lab:2", token="lab-token")
    clean_env.setenv("NOVACTL_PROFILE", "prod")
    prod = resolve(Args(config))  # type: ignore[arg-type]
    assert prod == Connection(endpoint="prod:443", token="prod-token", ca=b"PEM", tls=True)
    flagged = resolve(Args(config, token="flag", endpoint="flag:1"))  # type: ignore[arg-type]
    assert (flagged.endpoint, flagged.token, flagged.ca) == ("flag:1", "flag", b"PEM")


def test_environment_sits_between_a_named_profile_and_the_default(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('profile = "lab"\n' + CONFIG)
    (tmp_path / "ca.pem").write_bytes(b"PEM")
    clean_env.setenv("NOVACTL_ENDPOINT", "env:9")
    assert resolve(Args(config)).endpoint == "env:9"  # type: ignore[arg-type]
    assert resolve(Args(config)).token == "lab-token"  # the file's default profile: lab
    assert resolve(Args(config, profile="prod")).endpoint == "prod:443"  # type: ignore[arg-type]


def test_profile_errors(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    with pytest.raises(CliError, match=r"'nope' is not in .* \(profiles: lab, prod\)"):
        resolve(Args(config, profile="nope"))  # type: ignore[arg-type]
    with pytest.raises(CliError, match=r"ca\.pem"):
        resolve(Args(config, profile="prod"))  # type: ignore[arg-type]  # no CA file
    config.write_text('[profiles.x]\ntoken = "a"\ntoken_command = "b"\n')
    with pytest.raises(CliError, match="exclusive"):
        resolve(Args(config))  # type: ignore[arg-type]
    config.write_text('[profiles.x]\nendpont = "a"\n')
    with pytest.raises(CliError, match=r"profiles.x: unknown keys \['endpont'\]"):
        resolve(Args(config))  # type: ignore[arg-type]
    config.write_text('[profiles.x]\ntoken_command = "false"\n')
    with pytest.raises(CliError, match="exited 1"):
        resolve(Args(config, profile="x"))  # type: ignore[arg-type]


def test_progress_rewrites_a_line_only_on_a_terminal() -> None:
    counts = [Counter({"BUILD": 2}), Counter({"BUILD": 2}), Counter({"ACTIVE": 1, "BUILD": 1})]
    plain = io.StringIO()
    progress = Progress(plain, enabled=True, terminal=False)
    for c in counts:
        progress.show("r-1", c)
    progress.done()
    assert "\r" not in plain.getvalue()
    assert plain.getvalue().splitlines() == ["[r-1] BUILD=2", "[r-1] ACTIVE=1 BUILD=1"]
    tty = io.StringIO()
    progress = Progress(tty, enabled=True, terminal=True)
    for c in counts:
        progress.show("r-1", c)
    progress.done()
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().endswith("\n")
    silent = io.StringIO()
    Progress(silent, enabled=False, terminal=True).show("r-1", counts[0])
    assert silent.getvalue() == ""


def test_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["server", "list", "-o", "xml"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


class Dropped(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._code.name.lower()


class Stream:
    """One WatchServers stream of the fake: its events, then an error (or a clean end)."""

    def __init__(self, events: list[servers_pb2.ServerEvent], error: Exception | None) -> None:
        self.events, self.error, self.cancelled = events, error, False

    def __iter__(self) -> Iterator[servers_pb2.ServerEvent]:
        yield from self.events
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self.cancelled = True


class WatchClient:
    def __init__(self, *streams: Stream) -> None:
        self.streams = list(streams)
        self.opened: list[bool] = []  # wait_for_ready of each stream
        self.servers = self

    def WatchServers(self) -> None:  # only named: the fake's stream() answers
        raise AssertionError

    def stream(self, method: object, request: object, timeout: object, *,
               wait_for_ready: bool = False) -> Stream:  # fmt: skip
        self.opened.append(wait_for_ready)
        return self.streams.pop(0)


def event(server_id: str, status: int, change: str = "update") -> servers_pb2.ServerEvent:
    server = servers_pb2.Server(id=server_id, status=status)  # type: ignore[arg-type]
    return servers_pb2.ServerEvent(server=server, change=change)


BUILD, ACTIVE = servers_pb2.SERVER_STATUS_BUILD, servers_pb2.SERVER_STATUS_ACTIVE


def test_a_watch_gives_up_on_an_error_a_new_stream_would_repeat() -> None:
    client = WatchClient(
        Stream([event("a", BUILD, "snapshot")], Dropped(grpc.StatusCode.UNAVAILABLE)),
        Stream([], Dropped(grpc.StatusCode.PERMISSION_DENIED)),
    )
    notes: list[str] = []
    seen = []
    with pytest.raises(grpc.RpcError):
        for e in events(client, servers_pb2.WatchServersRequest(), timeout=None,  # type: ignore[arg-type]
                        notify=notes.append, pause=lambda _: None):  # fmt: skip
            seen.append(e.server.id)
    assert seen == ["a"] and client.opened == [False, True]
    assert notes == ["stream dropped (UNAVAILABLE: unavailable); reconnecting"]


def test_a_reconnect_that_fails_at_once_backs_off() -> None:
    unavailable = Dropped(grpc.StatusCode.UNAVAILABLE)
    client = WatchClient(
        Stream([event("a", BUILD, "snapshot")], unavailable),
        Stream([], unavailable),
        Stream([], unavailable),
        Stream([event("a", ACTIVE, "snapshot")], None),
    )
    pauses: list[float] = []
    stream = events(client, servers_pb2.WatchServersRequest(), timeout=None,  # type: ignore[arg-type]
                    notify=lambda _: None, pause=pauses.append)  # fmt: skip
    first, second = next(stream), next(stream)
    assert (first.change, second.change) == ("snapshot", "update")  # changed while away
    assert pauses == [0.5, 1.0]


def test_a_watched_server_gone_while_away_ends_the_watch() -> None:
    client = WatchClient(
        Stream([event("a", ACTIVE, "snapshot")], Dropped(grpc.StatusCode.UNAVAILABLE)),
        Stream([], Dropped(grpc.StatusCode.NOT_FOUND)),
    )
    notes: list[str] = []
    request = servers_pb2.WatchServersRequest(server_id="a")
    seen = list(events(client, request, timeout=None, notify=notes.append,  # type: ignore[arg-type]
                       pause=lambda _: None))  # fmt: skip
    assert [e.server.id for e in seen] == ["a"] and notes[-1] == "server a is gone"
