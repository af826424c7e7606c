"""The host network state on the wire (``internal/v1/datapath.proto``) and the two typed
clients: the conductor pushes a host's state to its compute, compute asks the conductor."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import datapath_pb2, datapath_pb2_grpc
from services.common.overlay import FloatingBinding, HostNetworkState, Uplink
from services.common.rpc.channels import ChannelPool
from services.common.rpc.retry import with_retries

STATE_DEADLINE_S = 10.0


def state_to_proto(state: HostNetworkState) -> datapath_pb2.HostNetworkState:
    return datapath_pb2.HostNetworkState(
        host=state.host,
        overlay=[
            datapath_pb2.OverlayNetwork(segmentation_id=vni, peers=sorted(str(p) for p in peers))
            for vni, peers in sorted(state.overlay.items())
        ],
        uplinks=[
            datapath_pb2.Uplink(
                segmentation_id=u.segmentation_id,
                bridge=u.bridge,
                address=str(u.address),
                gateway=str(u.gateway) if u.gateway else "",
                cidr=str(u.cidr),
            )
            for u in state.uplinks
        ],
        floating=[
            datapath_pb2.FloatingBinding(
                segmentation_id=f.segmentation_id,
                floating_address=str(f.floating),
                fixed_address=str(f.fixed),
                port_id=f.port_id,
            )
            for f in state.floating
        ],
    )


def state_from_proto(message: datapath_pb2.HostNetworkState) -> HostNetworkState:
    try:
        return HostNetworkState(
            host=message.host,
            overlay={
                n.segmentation_id: frozenset(IPv4Address(p) for p in n.peers)
                for n in message.overlay
            },
            uplinks=tuple(
                Uplink(
                    segmentation_id=u.segmentation_id,
                    bridge=u.bridge,
                    address=IPv4Interface(u.address),
                    gateway=IPv4Address(u.gateway) if u.gateway else None,
                    cidr=IPv4Network(u.cidr),
                )
                for u in message.uplinks
            ),
            floating=tuple(
                FloatingBinding(
                    segmentation_id=f.segmentation_id,
                    floating=IPv4Address(f.floating_address),
                    fixed=IPv4Address(f.fixed_address),
                    port_id=f.port_id,
                )
                for f in message.floating
            ),
        )
    except ValueError as exc:
        raise InvalidArgument("state", f"not a valid host network state: {exc}") from exc


class HostStatePusher:
    """The conductor's side: replace a compute host's network state (idempotent)."""

    def __init__(self, channels: ChannelPool, *, timeout: float = STATE_DEADLINE_S) -> None:
        self._channels = channels
        self._timeout = timeout

    async def set_host_state(self, address: str, state: HostNetworkState) -> None:
        stub = datapath_pb2_grpc.ComputeDatapathStub(self._channels.get(address))
        request = datapath_pb2.SetHostNetworkStateRequest(state=state_to_proto(state))

        async def call() -> None:
            await stub.SetHostNetworkState(request, timeout=self._timeout)

        await with_retries(call, attempts=3)


class HostNetworksRefresher:
    """The api's side: tell a conductor that host networks changed (it pushes in the
    background)."""

    def __init__(self, channels: ChannelPool, addresses: Sequence[str]) -> None:
        self._channels = channels
        self._addresses = list(addresses)
        self._next = 0

    async def refresh_host_networks(self) -> None:
        async def call() -> None:
            address = self._addresses[self._next % len(self._addresses)]
            self._next += 1
            stub = datapath_pb2_grpc.ConductorDatapathStub(self._channels.get(address))
            await stub.RefreshHostNetworks(
                datapath_pb2.RefreshHostNetworksRequest(), timeout=STATE_DEADLINE_S
            )

        await with_retries(call, attempts=3)


class HostStateSource:
    """Compute's side: the state the database gives this host (tries each conductor)."""

    def __init__(self, channels: ChannelPool, addresses: Sequence[str]) -> None:
        self._channels = channels
        self._addresses = list(addresses)
        self._next = 0

    async def host_state(self, host: str) -> HostNetworkState:
        async def call() -> HostNetworkState:
            address = self._addresses[self._next % len(self._addresses)]
            self._next += 1
            stub = datapath_pb2_grpc.ConductorDatapathStub(self._channels.get(address))
            reply = await stub.GetHostNetworkState(
                datapath_pb2.GetHostNetworkStateRequest(host=host), timeout=STATE_DEADLINE_S
            )
            return state_from_proto(reply.state)

        return await with_retries(call)
