"""PowerAction <-> the internal protos' PowerActionKind, for every client and servicer that
carries one (api -> conductor -> compute)."""

from __future__ import annotations

from services.common.domain import PowerAction
from services.common.generated.novagrpc.internal.v1 import conductor_pb2

POWER_ACTION_KINDS: dict[PowerAction, conductor_pb2.PowerActionKind] = {
    PowerAction.START: conductor_pb2.POWER_ACTION_KIND_START,
    PowerAction.STOP: conductor_pb2.POWER_ACTION_KIND_STOP,
    PowerAction.REBOOT_SOFT: conductor_pb2.POWER_ACTION_KIND_REBOOT_SOFT,
    PowerAction.REBOOT_HARD: conductor_pb2.POWER_ACTION_KIND_REBOOT_HARD,
}
POWER_ACTIONS: dict[conductor_pb2.PowerActionKind, PowerAction] = {
    kind: action for action, kind in POWER_ACTION_KINDS.items()
}
