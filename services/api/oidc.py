"""OpenID Connect bearer tokens: JWTs from the identity provider users already run, verified
against the issuer's published keys (JWKS), beside the api's own tokens.

PyJWT does the cryptography. What this module adds is policy: only asymmetric algorithms
(``none`` and HMAC, whose "key" would be the public JWKS, are refused), the issuer, audience
and expiry always checked, clock skew bounded, and claims mapped to a project and a role.
The JWKS comes from a file (read again when it changes) or from a URL (fetched in a thread,
kept for ``cache_seconds``, fetched again early, at most once a minute, when a token names a
key id it does not know: how a provider's key rotation reaches us).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from services.common.errors import Unauthenticated

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
KNOWN_ROLES = ("member", "admin", "reader")
REFETCH_AT_MOST_EVERY_S = 60.0
FETCH_TIMEOUT_S = 5.0
JWKS_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class OidcClaims:
    project_id: str
    roles: tuple[str, ...]
    expires_at: datetime


class JwksSource:
    """The issuer's keys by key id, from ``file`` or ``url``."""

    def __init__(self, *, file: str = "", url: str = "", cache_seconds: float = 300.0) -> None:
        if bool(file) == bool(url):
            raise ValueError("a JWKS comes from a file or a URL (one of them)")
        self._file, self._url, self._ttl = file, url, cache_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = -float("inf")
        self._stamp: tuple[int, int] | None = None

    def _parse(self, raw: bytes) -> dict[str, jwt.PyJWK]:
        keys = {}
        for entry in json.loads(raw).get("keys", []):
            kid = entry.get("kid")
            if not kid or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[kid] = jwt.PyJWK(entry)
            except jwt.PyJWTError as exc:  # a key type we do not take: skip it, say so
                log.warning("JWKS key %s skipped: %s", kid, exc)
        return keys

    def _read(self) -> dict[str, jwt.PyJWK]:
        """The keys now (in a worker thread: a file read or an HTTP fetch)."""
        if self._file:
            path = Path(self._file)
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                keys = self._parse(path.read_bytes())
                self._stamp = stamp
                return keys
            return self._keys
        request = urllib.request.Request(self._url, headers={"accept": "application/json"})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            return self._parse(bytes(response.read(JWKS_MAX_BYTES)))

    async def _load(self) -> None:
        self._keys = await asyncio.to_thread(self._read)
        self._loaded_at = time.monotonic()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        age = time.monotonic() - self._loaded_at
        if age > self._ttl or (kid not in self._keys and age > REFETCH_AT_MOST_EVERY_S):
            try:
                await self._load()
            except (OSError, ValueError) as exc:
                log.warning("JWKS not loaded (%s); keeping %d known keys", exc, len(self._keys))
        return self._keys.get(kid)


class OidcVerifier:
    def __init__(
        self,
        keys: JwksSource,
        *,
        issuer: str,
        audience: str,
        project_claim: str = "project_id",
        roles_claim: str = "roles",
        default_role: str = "member",
        leeway: timedelta = timedelta(seconds=30),
    ) -> None:
        if default_role not in KNOWN_ROLES:
            raise ValueError(f"default_role must be one of {KNOWN_ROLES}")
        self._keys = keys
        self._issuer, self._audience = issuer, audience
        self._project_claim, self._roles_claim = project_claim, roles_claim
        self._default_role = default_role
        self._leeway = leeway

    async def verify(self, token: str) -> OidcClaims:
        """The token's project and roles; Unauthenticated (saying why, never echoing the
        token) unless it is signed by a current key of the issuer, for us, and in date."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the bearer token is not a valid JWT ({exc})") from exc
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise Unauthenticated(f"JWT algorithm {algorithm!r} is not accepted")
        key = await self._keys.key(str(header.get("kid") or ""))
        if key is None:
            raise Unauthenticated("the JWT's key id is not one of the issuer's keys")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the JWT was refused: {exc}") from exc
        project = claims.get(self._project_claim)
        if not isinstance(project, str) or not 1 <= len(project) <= 255:
            raise Unauthenticated(f"the JWT has no usable {self._project_claim!r} claim")
        # accepted until its expiry plus the allowed skew, as jwt.decode just judged it
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC) + self._leeway
        return OidcClaims(project, self._roles(claims), expires)

    def _roles(self, claims: dict[str, Any]) -> tuple[str, ...]:
        raw = claims.get(self._roles_claim, [])
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = tuple(sorted({v for v in values if isinstance(v, str) and v in KNOWN_ROLES}))
        if "admin" in roles:
            roles = tuple(sorted({*roles, "member"}))
        return roles or (self._default_role,)
