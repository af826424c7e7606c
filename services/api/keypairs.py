"""Key pairs of the caller's project (import only: we never hold a private key)."""

from __future__ import annotations

import re
from typing import Protocol

from services.api.context import RequestContext
from services.common import public_keys
from services.common.domain import utcnow
from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.common.records import Keypair
from services.common.stores import KeypairStore, UnitOfWork

# Nova's rule: letters, digits, spaces, '_', '-', '.', '@'; 1 to 255 characters.
KEY_NAME = re.compile(r"^[A-Za-z0-9 _.@-]{1,255}$")


def check_key_name(field: str, name: str) -> str:
    if not KEY_NAME.match(name) or name != name.strip():
        raise InvalidArgument(field, "use 1 to 255 letters, digits, spaces, '_', '-', '.', '@'")
    return name


class KeypairTx(Protocol):
    @property
    def keypairs(self) -> KeypairStore: ...


class KeypairUseCases:
    def __init__(self, uow: UnitOfWork[KeypairTx]) -> None:
        self._uow = uow

    async def import_keypair(self, context: RequestContext, name: str, public_key: str) -> Keypair:
        name = check_key_name("name", name)
        try:
            public_keys.parse_public_key(public_key)
        except public_keys.InvalidPublicKey as exc:
            raise InvalidArgument("public_key", str(exc)) from exc

        def work(tx: KeypairTx) -> Keypair:
            if tx.keypairs.get(project_id=context.project_id, name=name) is not None:
                raise AlreadyExists(f"name: a keypair {name!r} exists already", field="name")
            return tx.keypairs.add(
                project_id=context.project_id, name=name, public_key=public_key, now=utcnow()
            )

        return await self._uow.write(work)

    async def get(self, context: RequestContext, name: str) -> Keypair:
        name = check_key_name("name", name)
        found = await self._uow.read(
            lambda tx: tx.keypairs.get(project_id=context.project_id, name=name)
        )
        if found is None:
            raise NotFound("keypair", name, field="name")
        return found

    async def list_keypairs(self, context: RequestContext) -> list[Keypair]:
        return await self._uow.read(
            lambda tx: tx.keypairs.list_keypairs(project_id=context.project_id)
        )

    async def delete(self, context: RequestContext, name: str) -> None:
        name = check_key_name("name", name)
        if not await self._uow.write(
            lambda tx: tx.keypairs.remove(project_id=context.project_id, name=name)
        ):
            raise NotFound("keypair", name, field="name")
