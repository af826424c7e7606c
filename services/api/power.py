"""StartServer, StopServer, RebootServer: check the state, record the task, hand it over."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext
from services.api.delete import RecordTx
from services.common.domain import Instance, PowerAction, TaskState, VmState, utcnow
from services.common.errors import NotFound, WrongState
from services.common.instance_actions import ActionName
from services.common.records import NewAction
from services.common.stores import UnitOfWork

# action -> (states it may start from, the task it sets, the instance action it records)
RULES: dict[PowerAction, tuple[tuple[VmState, ...], TaskState, ActionName]] = {
    PowerAction.START: ((VmState.STOPPED,), TaskState.POWERING_ON, ActionName.START),
    PowerAction.STOP: ((VmState.ACTIVE, VmState.ERROR), TaskState.POWERING_OFF, ActionName.STOP),
    PowerAction.REBOOT_SOFT: ((VmState.ACTIVE,), TaskState.REBOOTING, ActionName.REBOOT),
    PowerAction.REBOOT_HARD: (
        (VmState.ACTIVE, VmState.STOPPED, VmState.ERROR),
        TaskState.REBOOTING_HARD,
        ActionName.REBOOT,
    ),
}


class PowerActionSender(Protocol):
    async def power_action(
        self, uuid: str, action: PowerAction, *, request_id: str = ""
    ) -> None: ...


class PowerActions:
    def __init__(self, uow: UnitOfWork[RecordTx], conductor: PowerActionSender) -> None:
        self._uow = uow
        self._conductor = conductor

    async def __call__(self, server_id: str, action: PowerAction, context: RequestContext) -> None:
        server_id = validation.check_uuid_ref("id", server_id)
        allowed, task, name = RULES[action]

        def record(tx: RecordTx) -> Instance | None:
            now = utcnow()
            started = tx.instances.start_power_action(
                server_id, project_id=context.scope, allowed=allowed, task=task, now=now
            )
            if started is not None:
                tx.actions.start(
                    [NewAction(server_id, name, context.request_id, started.project_id)],
                    now,
                )
                return started
            current = tx.instances.get(server_id, project_id=context.scope)
            if current is None or current.vm_state is VmState.DELETED:
                raise NotFound("server", server_id, field="id")
            raise _wrong_state(action, current, allowed)

        await self._uow.write(record)
        await self._conductor.power_action(server_id, action, request_id=context.request_id)


def _wrong_state(action: PowerAction, current: Instance, allowed: Sequence[VmState]) -> WrongState:
    if current.task_state is not None:
        return WrongState(
            f"id: cannot {action.value.replace('_', ' ')} while the server is "
            f"{current.task_state.value}"
        )
    wanted = " or ".join(s.value for s in allowed)
    return WrongState(
        f"id: cannot {action.value.replace('_', ' ')} a server that is {current.vm_state.value} "
        f"(it must be {wanted})"
    )
