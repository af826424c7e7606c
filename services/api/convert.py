"""Domain -> protobuf for the public API (the only place that knows both)."""

from __future__ import annotations

from services.api.networks import NetworkUsage
from services.api.quotas import QuotaView
from services.common.db import actions, groups, keypairs, placement, security_groups
from services.common.domain import Flavor, GroupPolicy, Image, ImageStatus, Instance, ServerStatus
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    compute_services_pb2,
    keypairs_pb2,
    networks_pb2,
    quotas_pb2,
    security_groups_pb2,
    server_groups_pb2,
    servers_pb2,
)
from services.common.rpc.convert import to_timestamp

_CS = compute_services_pb2
GROUP_POLICIES = {
    GroupPolicy.AFFINITY: server_groups_pb2.SERVER_GROUP_POLICY_AFFINITY,
    GroupPolicy.ANTI_AFFINITY: server_groups_pb2.SERVER_GROUP_POLICY_ANTI_AFFINITY,
    GroupPolicy.SOFT_AFFINITY: server_groups_pb2.SERVER_GROUP_POLICY_SOFT_AFFINITY,
    GroupPolicy.SOFT_ANTI_AFFINITY: server_groups_pb2.SERVER_GROUP_POLICY_SOFT_ANTI_AFFINITY,
}
_IMAGE_STATES = {
    ImageStatus.ACTIVE: catalog_pb2.IMAGE_STATE_ACTIVE,
    ImageStatus.DELETED: catalog_pb2.IMAGE_STATE_DELETED,
}
_STATUSES = {
    ServerStatus.BUILD: servers_pb2.SERVER_STATUS_BUILD,
    ServerStatus.ACTIVE: servers_pb2.SERVER_STATUS_ACTIVE,
    ServerStatus.ERROR: servers_pb2.SERVER_STATUS_ERROR,
    ServerStatus.DELETED: servers_pb2.SERVER_STATUS_DELETED,
    ServerStatus.SHUTOFF: servers_pb2.SERVER_STATUS_SHUTOFF,
}


def server_to_proto(instance: Instance, *, admin: bool) -> servers_pb2.Server:
    server = servers_pb2.Server(
        id=instance.uuid,
        name=instance.display_name,
        status=_STATUSES[instance.status],
        vm_state=instance.vm_state.value,
        task_state=instance.task_state.value if instance.task_state else "",
        # Nova's numbers on both sides; Nova's NOSTATE (0) is POWER_STATE_UNSPECIFIED.
        power_state=int(instance.power_state),  # type: ignore[arg-type]
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
        description=instance.description or "",
        key_name=instance.key_name or "",
        tags=list(instance.tags),
        security_groups=list(instance.security_groups),
        networks=list(instance.networks) or ["none"],
        config_drive=instance.config_drive,
        addresses=[
            servers_pb2.ServerAddress(
                network=port.network.name,
                addr=str(address),
                version=4,
                mac_addr=port.mac,
                type=kind,
                network_id=port.network.network_id,
                port_id=port.port_id,
            )
            for port in instance.ports
            # as Nova shows them: each port's fixed address, then its floating one
            for address, kind in ((port.fixed_ip, "fixed"), (port.floating_ip, "floating"))
            if address is not None
        ],
    )
    if instance.guest_ready_at is not None:
        server.guest_ready.FromDatetime(instance.guest_ready_at)
    if instance.fault is not None:
        server.fault.code = instance.fault.code
        server.fault.message = instance.fault.message
        server.fault.created_at.FromDatetime(instance.fault.created_at)
        if admin:
            server.fault.details = instance.fault.details
    return server


def network_to_proto(usage: NetworkUsage, *, admin: bool) -> networks_pb2.Network:
    network = usage.network
    return networks_pb2.Network(
        id=network.id,
        name=network.name,
        project_id=network.project_id,
        cidr=str(network.cidr),
        gateway_ip=str(network.gateway) if network.gateway else "",
        dns_nameservers=[str(a) for a in network.dns_servers],
        allocation_pools=[
            networks_pb2.AllocationPool(start=str(first), end=str(last))
            for first, last in network.allocation_pools
        ],
        shared=network.shared,
        is_default=network.is_default,
        # Neutron shows provider details to admins only.
        segmentation_id=network.segmentation_id if admin else 0,
        mtu=network.mtu,
        created_at=to_timestamp(network.created_at),
        ports_in_use=usage.ports_in_use,
        pool_size=usage.pool_size,
        external_network_id=network.external_network_id or "",
    )


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


def group_to_proto(group: groups.ServerGroup) -> server_groups_pb2.ServerGroup:
    return server_groups_pb2.ServerGroup(
        id=group.uuid,
        name=group.name,
        policy=group.policy.value,
        group_policy=GROUP_POLICIES[group.policy],
        project_id=group.project_id,
        members=list(group.members),
        created_at=to_timestamp(group.created_at),
    )


def flavor_to_proto(flavor: Flavor) -> catalog_pb2.Flavor:
    return catalog_pb2.Flavor(
        id=flavor.id,
        name=flavor.name,
        vcpus=flavor.vcpus,
        ram=flavor.memory_mb,
        disk=flavor.root_gb,
        is_public=flavor.is_public,
    )


def image_to_proto(image: Image) -> catalog_pb2.Image:
    # Where the files lie on the image store is the operators' business, not the users'.
    visible = {k: v for k, v in image.properties.items() if not k.endswith("_location")}
    return catalog_pb2.Image(
        id=image.id,
        name=image.name,
        disk_format=image.disk_format,
        container_format=image.container_format,
        status=image.status.value,
        state=_IMAGE_STATES[image.status],
        size=image.size_bytes,
        checksum=image.checksum,
        properties=visible,
        created_at=to_timestamp(image.created_at),
        owner=image.owner or "",
    )


def keypair_to_proto(keypair: keypairs.Keypair) -> keypairs_pb2.Keypair:
    return keypairs_pb2.Keypair(
        name=keypair.name,
        public_key=keypair.public_key,
        fingerprint=keypair.fingerprint,
        type=keypair.type,
        created_at=to_timestamp(keypair.created_at),
    )


def quota_to_proto(view: QuotaView) -> quotas_pb2.QuotaSet:
    return quotas_pb2.QuotaSet(
        project_id=view.project_id,
        instances=quotas_pb2.QuotaUsage(
            limit=view.limits["instances"], in_use=view.usage.instances
        ),
        cores=quotas_pb2.QuotaUsage(limit=view.limits["cores"], in_use=view.usage.cores),
        ram=quotas_pb2.QuotaUsage(limit=view.limits["ram"], in_use=view.usage.ram),
    )


def node_to_proto(view: placement.NodeView) -> compute_services_pb2.ComputeService:
    state = view.state
    return compute_services_pb2.ComputeService(
        host=state.host,
        hypervisor_hostname=state.hypervisor_hostname,
        hypervisor_type=state.extra.get("hypervisor_type", ""),
        availability_zone=state.availability_zone,
        state="up" if state.is_up else "down",
        status="enabled" if state.enabled else "disabled",
        service_state=_CS.COMPUTE_SERVICE_STATE_UP
        if state.is_up
        else _CS.COMPUTE_SERVICE_STATE_DOWN,
        service_status=_CS.COMPUTE_SERVICE_STATUS_ENABLED
        if state.enabled
        else _CS.COMPUTE_SERVICE_STATUS_DISABLED,
        disabled_reason=view.disabled_reason or "",
        vcpus=state.total.vcpus,
        vcpus_used=state.used.vcpus,
        memory_mb=state.total.memory_mb,
        memory_mb_used=state.used.memory_mb,
        local_gb=state.total.disk_gb,
        local_gb_used=state.used.disk_gb,
        running_vms=state.instance_count,
        cpu_allocation_ratio=state.cpu_allocation_ratio,
        ram_allocation_ratio=state.ram_allocation_ratio,
        disk_allocation_ratio=state.disk_allocation_ratio,
        last_heartbeat=to_timestamp(view.last_heartbeat),
    )


def security_group_rule_to_proto(
    rule: security_groups.GroupRule,
) -> security_groups_pb2.SecurityGroupRule:
    return security_groups_pb2.SecurityGroupRule(
        id=rule.id,
        security_group_id=rule.group_id,
        direction=rule.direction.value,
        protocol=rule.protocol.value,
        port_range_min=rule.port_min or 0,
        port_range_max=rule.port_max or 0,
        remote_ip_prefix=str(rule.remote_cidr) if rule.remote_cidr else "",
        remote_group_id=rule.remote_group_id or "",
        ethertype="IPv4",
        created_at=to_timestamp(rule.created_at),
    )


def security_group_to_proto(
    group: security_groups.SecurityGroup,
) -> security_groups_pb2.SecurityGroup:
    return security_groups_pb2.SecurityGroup(
        id=group.id,
        name=group.name,
        description=group.description,
        project_id=group.project_id,
        rules=[security_group_rule_to_proto(r) for r in group.rules],
        created_at=to_timestamp(group.created_at),
    )
