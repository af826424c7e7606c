"""Instance actions and their events: how a user learns what happened to a server and why
(Nova's ``os-instance-actions``). Every write takes a list, for the batched callers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, func, select, update

from services.common import instance_actions
from services.common.db.bulk import insert_rows
from services.common.db.models import ACTION_EVENTS, ACTIONS
from services.common.instance_actions import ActionEventName, ActionName, ActionResult
from services.common.records import Action as Action  # noqa: PLC0414
from services.common.records import ActionEvent as ActionEvent  # noqa: PLC0414
from services.common.records import EventRecord as EventRecord  # noqa: PLC0414
from services.common.records import NewAction as NewAction  # noqa: PLC0414

# The names as this module's callers have always spelt them (the Enums' members).
CREATE = ActionName.CREATE
DELETE = ActionName.DELETE
START = ActionName.START
STOP = ActionName.STOP
REBOOT = ActionName.REBOOT
CONDUCTOR_SCHEDULE = ActionEventName.CONDUCTOR_SCHEDULE
COMPUTE_BUILD_AND_RUN = ActionEventName.COMPUTE_BUILD_AND_RUN
COMPUTE_TERMINATE = ActionEventName.COMPUTE_TERMINATE
SUCCESS = ActionResult.SUCCESS
ERROR = ActionResult.ERROR
POWER_ACTIONS = instance_actions.POWER_ACTIONS
ACTION_OF = instance_actions.ACTION_OF
DETAILS_MAX = 4000


def start_actions(connection: Connection, actions: Sequence[NewAction], now: datetime) -> None:
    if actions:
        insert_rows(
            connection,
            ACTIONS,
            [
                {
                    "instance_uuid": a.instance_uuid,
                    "action": a.action,
                    "request_id": a.request_id,
                    "project_id": a.project_id,
                    "start_time": now,
                    "finish_time": None,
                    "message": None,
                }
                for a in actions
            ],
        )


_LATEST_ACTION_IDS = (
    select(ACTIONS.c.instance_uuid, func.max(ACTIONS.c.id))
    .where(
        ACTIONS.c.instance_uuid.in_(bindparam("uuids", expanding=True)),
        ACTIONS.c.action == bindparam("kind"),
    )
    .group_by(ACTIONS.c.instance_uuid)
)


def _latest_action_ids(
    connection: Connection, uuids: Sequence[str], action: ActionName
) -> dict[str, int]:
    rows = connection.execute(_LATEST_ACTION_IDS, {"uuids": list(uuids), "kind": action})
    return {u: int(i) for u, i in rows}


def _action_ids_of(
    connection: Connection, events: Sequence[EventRecord]
) -> dict[tuple[str, ActionName], int]:
    """(instance uuid, action) -> the id of that instance's latest such action, one query per
    kind of action among ``events``."""
    ids: dict[tuple[str, ActionName], int] = {}
    for action in {e.action for e in events}:
        uuids = [e.instance_uuid for e in events if e.action == action]
        for uuid, action_id in _latest_action_ids(connection, uuids, action).items():
            ids[(uuid, action)] = action_id
    return ids


def add_events(connection: Connection, events: Sequence[EventRecord], now: datetime) -> None:
    """Insert events (started now; finished now when ``finish``)."""
    if not events:
        return
    ids = _action_ids_of(connection, events)
    rows = [
        {
            "action_id": ids[(e.instance_uuid, e.action)],
            "event": e.event,
            "host": e.host,
            "start_time": now,
            "finish_time": now if e.finish else None,
            "result": e.result if e.finish else None,
            "details": e.details[:DETAILS_MAX],
        }
        for e in events
        if (e.instance_uuid, e.action) in ids
    ]
    insert_rows(connection, ACTION_EVENTS, rows)


# The open event of an instance's latest action of a kind, found inside the UPDATE itself:
# one statement per batch where a SELECT of the action ids and then an UPDATE were two.
_LATEST_ACTION = (
    select(func.max(ACTIONS.c.id))
    .where(ACTIONS.c.instance_uuid == bindparam("b_uuid"), ACTIONS.c.action == bindparam("b_kind"))
    .scalar_subquery()
)
_FINISH_EVENT = (
    update(ACTION_EVENTS)
    .where(
        and_(
            ACTION_EVENTS.c.action_id == _LATEST_ACTION,
            ACTION_EVENTS.c.event == bindparam("b_event"),
            ACTION_EVENTS.c.host == bindparam("b_host"),
            ACTION_EVENTS.c.finish_time.is_(None),
        )
    )
    .values(
        finish_time=bindparam("b_now"),
        result=bindparam("b_result"),
        details=bindparam("b_details"),
    )
)
_FINISH_ACTIONS = (
    update(ACTIONS)
    .where(
        ACTIONS.c.instance_uuid.in_(bindparam("b_uuids", expanding=True)),
        ACTIONS.c.action == bindparam("b_kind"),
        ACTIONS.c.finish_time.is_(None),
    )
    .values(finish_time=bindparam("b_now"), message=bindparam("b_message"))
)


def finish_events(connection: Connection, events: Sequence[EventRecord], now: datetime) -> None:
    """Close the open event of each (instance, event, host) with its result."""
    if not events:
        return
    connection.execute(
        _FINISH_EVENT,
        [
            {
                "b_uuid": e.instance_uuid,
                "b_kind": e.action,
                "b_event": e.event,
                "b_host": e.host,
                "b_result": e.result,
                "b_details": e.details[:DETAILS_MAX],
                "b_now": now,
            }
            for e in events
        ],
    )


def finish_actions(
    connection: Connection,
    uuids: Sequence[str],
    action: ActionName,
    *,
    now: datetime,
    message: str | None = None,
) -> None:
    if uuids:
        connection.execute(
            _FINISH_ACTIONS,
            {
                "b_uuids": list(uuids),
                "b_kind": action,
                "b_now": now,
                "b_message": message[:255] if message else None,
            },
        )


def list_actions(connection: Connection, instance_uuid: str) -> list[Action]:
    actions = [
        r._mapping
        for r in connection.execute(
            select(ACTIONS).where(ACTIONS.c.instance_uuid == instance_uuid).order_by(ACTIONS.c.id)
        )
    ]
    events = connection.execute(
        select(ACTION_EVENTS)
        .where(ACTION_EVENTS.c.action_id.in_([a["id"] for a in actions]))
        .order_by(ACTION_EVENTS.c.id)
    )
    by_action: dict[int, list[ActionEvent]] = {}
    for e in events:
        by_action.setdefault(e.action_id, []).append(
            ActionEvent(e.event, e.host, e.start_time, e.finish_time, e.result, e.details)
        )
    return [
        Action(
            a["instance_uuid"],
            a["action"],
            a["request_id"],
            a["project_id"],
            a["start_time"],
            a["finish_time"],
            a["message"],
            tuple(by_action.get(a["id"], ())),
        )
        for a in actions
    ]
