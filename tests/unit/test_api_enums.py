"""The enums that replaced strings on the wire: old clients' strings and new clients' enums
mean the same thing, and an unknown value of either is refused naming its field."""

from __future__ import annotations

import pytest

from services.api.convert import GROUP_POLICIES
from services.api.groups_servicer import requested_policy
from services.common.domain import GroupPolicy, PowerAction
from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import compute_pb2, conductor_pb2
from services.common.generated.novagrpc.v1 import server_groups_pb2
from services.common.rpc.power_actions import POWER_ACTION_KINDS
from services.compute.servicer import power_action_of

pytestmark = pytest.mark.timeout(10)

Request = server_groups_pb2.CreateServerGroupRequest


@pytest.mark.parametrize("policy", list(GroupPolicy))
def test_a_policy_by_its_string_or_its_enum_is_the_same(policy: GroupPolicy) -> None:
    assert requested_policy(Request(name="g", policy=policy.value)) is policy
    assert requested_policy(Request(name="g", group_policy=GROUP_POLICIES[policy])) is policy
    both = Request(name="g", policy=policy.value, group_policy=GROUP_POLICIES[policy])
    assert requested_policy(both) is policy


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (Request(name="g"), "group_policy"),
        (Request(name="g", policy="spread"), "policy"),
        (Request(name="g", group_policy=42), "group_policy"),  # type: ignore[arg-type]
        (
            Request(
                name="g",
                policy="affinity",
                group_policy=server_groups_pb2.SERVER_GROUP_POLICY_ANTI_AFFINITY,
            ),
            "policy",
        ),
    ],
)
def test_a_missing_unknown_or_contradictory_policy_is_refused(
    request_: Request, field: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        requested_policy(request_)
    assert raised.value.field == field


def test_every_policy_and_power_action_has_an_enum_value() -> None:
    assert set(GROUP_POLICIES) == set(GroupPolicy)
    assert set(POWER_ACTION_KINDS) == set(PowerAction)
    assert len(set(POWER_ACTION_KINDS.values())) == len(PowerAction)


@pytest.mark.parametrize("action", list(PowerAction))
def test_compute_reads_the_kind_or_an_older_conductors_string(action: PowerAction) -> None:
    new = compute_pb2.ComputePowerActionRequest(instance_uuid="u", kind=POWER_ACTION_KINDS[action])
    old = compute_pb2.ComputePowerActionRequest(instance_uuid="u", action=action.value)
    assert power_action_of(new) is action and power_action_of(old) is action


def test_compute_refuses_an_unknown_kind_or_string() -> None:
    with pytest.raises(InvalidArgument) as raised:
        power_action_of(compute_pb2.ComputePowerActionRequest(kind=99))  # type: ignore[arg-type]
    assert raised.value.field == "kind"
    with pytest.raises(InvalidArgument) as raised:
        power_action_of(compute_pb2.ComputePowerActionRequest(action="explode"))
    assert raised.value.field == "action"
    assert conductor_pb2.POWER_ACTION_KIND_UNSPECIFIED == 0
