"""A failed start/stop/reboot that compute reports finishes the instance action it belongs to,
named by the event itself (no longer read back out of the reason's text)."""

from __future__ import annotations

import uuid

import pytest

from services.common.db import actions
from services.common.db import instances as instance_repo
from services.common.db.build_store import SqlEventStore
from services.common.db.engine import Database
from services.common.domain import (
    Flavor,
    Instance,
    InstanceEvent,
    InstanceEventKind,
    PowerAction,
    PowerState,
    VmState,
    utcnow,
)
from services.conductor.events import EventPolicy, apply_events

pytestmark = pytest.mark.timeout(60)


def active_instance(db: Database, *recorded: actions.ActionName) -> str:
    now = utcnow()
    instance = Instance(
        uuid=str(uuid.uuid4()), id=None, display_name="s", project_id="p",
        flavor=Flavor("1", "m1.tiny", 1, 512, 1), image_id="img", reservation_id="r-1",
        vm_state=VmState.ACTIVE, task_state=None, power_state=PowerState.RUNNING, host="h0",
        node="h0", metadata={}, created_at=now,
    )  # fmt: skip
    with db.begin() as connection:
        instance_repo.insert_instances(connection, [instance])
        actions.start_actions(
            connection, [actions.NewAction(instance.uuid, a, "req", "p") for a in recorded], now
        )
    return instance.uuid


def failed(uuid_: str, action: PowerAction | None) -> InstanceEvent:
    return InstanceEvent(uuid_, "h0", InstanceEventKind.ACTION_FAILED, utcnow(),
                         reason="reboot_hard: domain is locked", power_action=action)  # fmt: skip


def finished(db: Database, uuid_: str) -> dict[str, str | None]:
    with db.begin() as connection:
        return {
            a.action: a.message if a.finish_time is not None else "open"
            for a in actions.list_actions(connection, uuid_)
        }


@pytest.mark.parametrize("action", [PowerAction.REBOOT_HARD, None], ids=["named", "old-compute"])
async def test_a_failed_power_action_finishes_its_action_with_the_reason(
    db: Database, action: PowerAction | None
) -> None:
    server = active_instance(db, actions.CREATE, actions.REBOOT)
    with db.begin() as connection:
        actions.finish_actions(connection, [server], actions.CREATE, now=utcnow())
    await db.write(
        lambda c: apply_events(SqlEventStore(c), [failed(server, action)], EventPolicy())
    )
    assert finished(db, server) == {"create": None, "reboot": "reboot_hard: domain is locked"}
