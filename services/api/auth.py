"""Bearer-token authentication for the public API.

Each request carries ``authorization: Bearer <token>``: one of the api's own tokens, or
(with an OpenID Connect issuer configured) a JWT of that issuer (oidc.py). An own token's
SHA-256 is looked up in the database; the answer is cached for ``cache_seconds`` so that a
busy client costs no query per call (a revoked token stops working within that time), and
no identity outlives its token's expiry. The token's project and roles become the request's
context; the token itself never reaches a log line or an error message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from services.common.db import tokens
from services.common.db.engine import Database
from services.common.domain import utcnow
from services.common.errors import ErrorReason, PermissionDenied, Unauthenticated

if TYPE_CHECKING:  # PyJWT loads cryptography (~10 MiB): only a service that uses OIDC pays
    from services.api.oidc import OidcVerifier

AUTHORIZATION_HEADER = "authorization"
CACHE_MAX = 10_000


# What a reader may call: the public API's reads all start so.
READ_PREFIXES = ("Get", "List", "Watch")


@dataclass(frozen=True, slots=True)
class Identity:
    project_id: str
    roles: tuple[str, ...]
    expires_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def read_only(self) -> bool:
        """A token with the reader role and neither member nor admin."""
        return "reader" in self.roles and not {"member", "admin"} & set(self.roles)

    def check_method(self, method: str) -> None:
        """``method``: the RPC's name or its full path (/package.Service/Method)."""
        if self.read_only and not method.rsplit("/", 1)[-1].startswith(READ_PREFIXES):
            raise PermissionDenied(
                f"{method}: a reader token may only read (Get, List, Watch)",
                reason=ErrorReason.READ_ONLY_TOKEN,
            )


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == AUTHORIZATION_HEADER and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated(
                "authorization: expected 'Bearer <token>'", field=AUTHORIZATION_HEADER
            )
    raise Unauthenticated(
        "authorization: missing bearer token (authorization: Bearer <token>)",
        field=AUTHORIZATION_HEADER,
        reason=ErrorReason.TOKEN_MISSING,
    )


def looks_like_jwt(token: str) -> bool:
    """A JWS compact serialisation (our own tokens start with ``ngt_``)."""
    return token.count(".") == 2 and token.startswith("ey")


class Authenticator:
    def __init__(
        self, db: Database, *, cache_seconds: float = 30.0, oidc: OidcVerifier | None = None
    ) -> None:
        """``oidc``: also accept JWTs from that OpenID Connect issuer."""
        self._oidc = oidc
        self._db = db
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    async def identify(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Identity:
        secret = bearer_token(metadata)
        key = tokens.hash_token(secret)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            identity = cached[1]
        elif self._oidc is not None and looks_like_jwt(secret):
            # refusals are not cached: a key the issuer publishes later must be taken then
            claims = await self._oidc.verify(secret)
            identity = Identity(claims.project_id, claims.roles, claims.expires_at)
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, identity)
        else:
            record = await self._db.read(lambda c: tokens.find_by_secret(c, secret))
            usable = record is not None and record.usable(utcnow())
            identity = (
                Identity(record.project_id, record.roles, record.expires_at)
                if record and usable
                else None
            )
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, identity)
        # a cached identity must not outlive its token
        expired = (
            identity is not None
            and identity.expires_at is not None
            and (identity.expires_at <= utcnow())
        )
        if identity is None or expired:
            raise Unauthenticated("the bearer token is not valid (unknown, expired or revoked)")
        return identity
