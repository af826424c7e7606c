"""Client channels: one per peer address, shared, with keepalive and message limits."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from services.common.rpc.server import MAX_MESSAGE_BYTES
from services.common.tls import InternalTls
from services.common.tls_reload import ReloadingClientTls

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # A dns:/// target with several addresses (a headless Service): use them all.
    ("grpc.lb_policy_name", "round_robin"),
    # A server's max_connection_age GOAWAY makes the channel resolve the name again, to find
    # replicas added since; gRPC's default allows that once per 30 s, which would hold a new
    # conductor back for half a minute. Resolution still only happens on such events.
    ("grpc.dns_min_time_between_resolutions_ms", 1_000),
]


# How long a channel opened with a replaced certificate may finish its calls.
RETIRED_CHANNEL_GRACE_S = 60.0


class ChannelPool:
    """Channels by address, created on first use and closed together; mutual TLS when the
    service has internal certificates (plaintext only when its settings say so).

    With ``ReloadingClientTls`` the pool opens new channels once the certificate files
    change; the old ones finish their calls (up to RETIRED_CHANNEL_GRACE_S) and close."""

    def __init__(self, tls: InternalTls | ReloadingClientTls | None = None) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tls = tls
        self._generation = 0
        self._retiring: set[asyncio.Task[None]] = set()

    def _current_tls(self) -> InternalTls | None:
        if not isinstance(self._tls, ReloadingClientTls):
            return self._tls
        tls = self._tls.current()
        if self._tls.generation != self._generation:
            self._generation = self._tls.generation
            self._retire()
        return tls

    def _retire(self) -> None:
        retired, self._channels = list(self._channels.values()), {}
        for channel in retired:
            task = asyncio.get_running_loop().create_task(
                channel.close(grace=RETIRED_CHANNEL_GRACE_S)
            )
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def get(self, address: str, *, key: str = "") -> grpc.aio.Channel:
        """The channel for ``address``; a ``key`` asks for a separate one (its own connection,
        which round_robin may place on another backend)."""
        tls = self._current_tls()
        channel = self._channels.get(address + "#" + key)
        if channel is None:
            if tls is None:
                channel = grpc.aio.insecure_channel(address, options=self._options(key))
            else:
                channel = grpc.aio.secure_channel(
                    address,
                    tls.channel_credentials(),
                    options=self._options(key) + tls.channel_options(),
                )
            self._channels[address + "#" + key] = channel
        return channel

    @staticmethod
    def _options(key: str) -> list[tuple[str, Any]]:
        # a distinct channel argument keeps gRPC from sharing one subchannel between them
        return [*CHANNEL_OPTIONS, ("grpc.channel_pool_key", key)] if key else CHANNEL_OPTIONS

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
        for task in list(self._retiring):
            task.cancel()
