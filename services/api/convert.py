"""Domain -> protobuf for the public API (the only place that knows both)."""

from __future__ import annotations

from services.common.db import actions, groups
from services.common.domain import Instance
from services.common.generated.novagrpc.v1 import servers_pb2
from services.common.rpc.convert import to_timestamp


def server_to_proto(instance: Instance, *, admin: bool) -> servers_pb2.Server:
    server = servers_pb2.Server(
        id=instance.uuid,
        name=instance.display_name,
        status=instance.status.value,
        vm_state=instance.vm_state.value,
        task_state=instance.task_state.value if instance.task_state else "",
        power_state=instance.power_state.name,
        project_id=instance.project_id,
        flavor_id=instance.flavor.id,
        flavor_name=instance.flavor.name,
        image_id=instance.image_id,
        reservation_id=instance.reservation_id,
        host=instance.host or "",
        metadata=instance.metadata,
        created_at=to_timestamp(instance.created_at),
        updated_at=to_timestamp(instance.updated_at),
        launched_at=to_timestamp(instance.launched_at),
        availability_zone=instance.availability_zone or "",
    )
    if instance.fault is not None:
        server.fault.code = instance.fault.code
        server.fault.message = instance.fault.message
        server.fault.created_at.FromDatetime(instance.fault.created_at)
        if admin:
            server.fault.details = instance.fault.details
    return server


def action_to_proto(action: actions.Action, *, admin: bool) -> servers_pb2.ServerAction:
    return servers_pb2.ServerAction(
        action=action.action,
        request_id=action.request_id,
        start_time=to_timestamp(action.start_time),
        finish_time=to_timestamp(action.finish_time),
        message=action.message or "",
        events=[
            servers_pb2.ServerActionEvent(
                event=e.event,
                host=(e.host or "") if admin else "",
                start_time=to_timestamp(e.start_time),
                finish_time=to_timestamp(e.finish_time),
                result=e.result or "",
                details=e.details,
            )
            for e in action.events
        ],
    )


def group_to_proto(group: groups.ServerGroup) -> servers_pb2.ServerGroup:
    return servers_pb2.ServerGroup(
        id=group.uuid,
        name=group.name,
        policy=group.policy,
        project_id=group.project_id,
        members=list(group.members),
        created_at=to_timestamp(group.created_at),
    )
