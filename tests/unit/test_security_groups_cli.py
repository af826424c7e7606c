"""novactl's security-group commands parse as openstackclient's do, and the default group's
rules are Neutron's."""

from __future__ import annotations

import pytest

from services.cli.__main__ import parser as _parser
from services.cli.client import CliError
from services.cli.commands.security_groups import _port_range
from services.common.db.security_groups import NewRule, default_rules
from services.common.networking import Direction, IpProtocol

pytestmark = pytest.mark.timeout(10)


def test_rule_create_flags() -> None:
    args = _parser().parse_args(["security-group", "rule", "create", "web", "--egress",
                                 "--protocol", "udp", "--dst-port", "53:54",
                                 "--remote-group", "db"])  # fmt: skip
    assert (args.group, args.direction, args.protocol, args.dst_port, args.remote_group,
            args.remote_ip) == ("web", "egress", "udp", "53:54", "db", None)  # fmt: skip
    # openstackclient's default direction is ingress
    assert _parser().parse_args(["security-group", "rule", "create", "web"]).direction == "ingress"
    with pytest.raises(SystemExit):
        _parser().parse_args(["security-group", "rule", "create", "web", "--remote-ip",
                              "10.0.0.0/8", "--remote-group", "db"])  # fmt: skip


def test_server_add_and_remove_security_group_parse() -> None:
    for action in ("add", "remove"):
        args = _parser().parse_args(["server", action, "security", "group", "srv-1", "web"])
        assert (args.action, args.server, args.group) == (action, "srv-1", "web")
    # the server command keeps its own sub-commands
    assert _parser().parse_args(["server", "list"]).action == "list"


@pytest.mark.parametrize(("text", "expected"),
                         [(None, (0, 0)), ("80", (80, 80)), ("80:90", (80, 90))])  # fmt: skip
def test_dst_port(text: str | None, expected: tuple[int, int]) -> None:
    assert _port_range(text) == expected


@pytest.mark.parametrize("text", ["http", "80:", "80-90"])
def test_bad_dst_port(text: str) -> None:
    with pytest.raises(CliError, match="--dst-port"):
        _port_range(text)


def test_default_rules_are_neutrons() -> None:
    assert default_rules("g") == [
        NewRule("g", Direction.EGRESS, IpProtocol.ANY),
        NewRule("g", Direction.INGRESS, IpProtocol.ANY, remote_group_id="g"),
    ]
