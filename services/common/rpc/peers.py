"""Which internal peer may call which RPC, checked from its certificate on every call.

Mutual TLS proves a caller holds a certificate of the deployment's CA; the certificate's SAN
URI (services.common.identity) says which service it is. Each internal server lists, per
method, the roles allowed to call it; a method of a guarded service that the list forgets is
refused (fail closed), and so is a caller whose certificate names no role. Finer checks that
depend on the request (a compute reports only for its own host) are the servicers', with
``peer_identity``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import grpc

from services.common.errors import PermissionDenied
from services.common.identity import ServiceIdentity, ServiceRole, identity_from_uris

log = logging.getLogger(__name__)

# method (/package.Service/Method) -> the roles that may call it
CallerPolicy = Mapping[str, Collection[ServiceRole]]


def peer_identity(context: grpc.aio.ServicerContext[Any, Any]) -> ServiceIdentity | None:
    """The identity the caller's certificate names; None on a plaintext connection or for a
    certificate without (or with conflicting) nova-grpc URIs."""
    auth = context.auth_context() or {}
    uris = [u.decode(errors="replace") for u in auth.get("peer_uri", ())]
    return identity_from_uris(uris)


def deny(context: grpc.aio.ServicerContext[Any, Any], why: str) -> PermissionDenied:
    """The error to raise, logged with who tried (an internal refusal is always news)."""
    log.warning("refused internal call from %s (%s): %s", context.peer(), _subject(context), why)
    return PermissionDenied(why)


def _subject(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    subject = (context.auth_context() or {}).get("x509_subject", [b"no certificate"])
    return bytes(subject[0]).decode(errors="replace")


def _guarded_services(policy: CallerPolicy) -> set[str]:
    return {method.rsplit("/", 1)[0] for method in policy}


class CallerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses, before the servicer runs, every call of a guarded service whose caller's role
    the policy does not list. Health and reflection stay open to any CA-signed peer."""

    def __init__(self, policy: CallerPolicy) -> None:
        self._policy = {m: frozenset(r) for m, r in policy.items()}
        self._services = _guarded_services(policy)
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.rsplit("/", 1)[0] not in self._services:
            return handler
        cached = self._cache.get(method)
        if cached is None:
            cached = _guard(handler, method, self._policy.get(method, frozenset()))
            self._cache[method] = cached
        return cached


def _check(
    context: grpc.aio.ServicerContext[Any, Any], method: str, allowed: frozenset[ServiceRole]
) -> None:
    identity = peer_identity(context)
    if identity is None:
        raise deny(context, f"{method}: the caller's certificate names no nova-grpc role")
    if identity.role not in allowed:
        raise deny(context, f"{method}: not allowed to {identity.role.value} callers")


def _guard(
    handler: grpc.RpcMethodHandler, method: str, allowed: frozenset[ServiceRole]
) -> grpc.RpcMethodHandler:
    deserialize = handler.request_deserializer
    serialize = handler.response_serializer

    def unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            _check(context, method, allowed)
            return await behavior(request, context)

        return guarded

    def stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            _check(context, method, allowed)
            async for item in behavior(request, context):
                yield item

        return guarded

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary), deserialize, serialize
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            unary(handler.stream_unary), deserialize, serialize
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            stream(handler.unary_stream), deserialize, serialize
        )
    return grpc.stream_stream_rpc_method_handler(
        stream(handler.stream_stream), deserialize, serialize
    )
