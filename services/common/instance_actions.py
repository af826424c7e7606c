"""The names an instance action and its events are recorded under (Nova's
``os-instance-actions``): Enums, so that a misspelt name is a type error, not a row nobody
finds. Their values are what the database and the API have always shown."""

from __future__ import annotations

import enum

from services.common.domain import PowerAction


class ActionName(enum.StrEnum):
    CREATE = "create"
    DELETE = "delete"
    START = "start"
    STOP = "stop"
    REBOOT = "reboot"  # soft and hard alike, as Nova records them


class ActionEventName(enum.StrEnum):
    CONDUCTOR_SCHEDULE = "conductor_schedule"
    COMPUTE_BUILD_AND_RUN = "compute_build_and_run"
    COMPUTE_TERMINATE = "compute_terminate"


class ActionResult(enum.StrEnum):
    SUCCESS = "Success"
    ERROR = "Error"


POWER_ACTIONS = (ActionName.START, ActionName.STOP, ActionName.REBOOT)

# The action a power request is recorded under.
ACTION_OF = {
    PowerAction.START: ActionName.START,
    PowerAction.STOP: ActionName.STOP,
    PowerAction.REBOOT_SOFT: ActionName.REBOOT,
    PowerAction.REBOOT_HARD: ActionName.REBOOT,
}
