"""CreateServer's batch lookups: a batch that repeats a key pair, a server group and a forced
host reads each once, and every create in it still gets the same answer or the same refusal."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event

from services.api.context import RequestContext
from services.api.create import CreateServerCommand, CreateServerResult, CreateServers, validate
from services.common.db import groups, keypairs, placement
from services.common.db.engine import Database
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import ComputeNodeReport, GroupPolicy, utcnow
from services.common.errors import NotFound
from tests.support.keys import ed25519_public_key


class _NoCasts:
    def cast(
        self,
        instance_uuids: Sequence[str],
        *,
        reservation_id: str,
        request_id: str,
        admin_password: str = "",
    ) -> None:
        pass


def _reads_of(statements: list[str], pattern: str) -> int:
    return sum(1 for s in statements if s.lstrip().upper().startswith("SELECT")
               and re.search(pattern, s))  # fmt: skip


async def test_a_batch_reads_each_key_pair_group_and_forced_host_once(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        now = utcnow()
        with db.begin() as connection:
            placement.upsert_compute_node(
                connection,
                ComputeNodeReport("host-a", "host-a", "host-a:1", 4, 4096, 40, "QEMU", "x86_64",
                                  "nova", 1.0, 1.0, 1.0),
                now=now,
            )  # fmt: skip
            key = keypairs.add(connection, project_id="p1", name="k",
                               public_key=ed25519_public_key(), now=now)  # fmt: skip
            group = groups.create_group(
                connection,
                name="g",
                project_id="p1",
                policy=GroupPolicy.SOFT_ANTI_AFFINITY,
                now=now,
            )
        # An admin may force a host; the key pair is the caller's project's, the group any.
        context = RequestContext("p1", "req-1", is_admin=True)

        def command(name: str, key_name: str = "k") -> CreateServerCommand:
            return CreateServerCommand(
                name=name, flavor_ref="m1.tiny", image_ref="nova-tiny",
                availability_zone="nova:host-a", group=group.uuid, key_name=key_name,
            )  # fmt: skip

        batch = [validate(command(f"s{i}"), context) for i in range(3)]
        batch += [validate(command(f"m{i}", key_name="missing"), context) for i in range(2)]

        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        event.listen(db.writer, "before_cursor_execute", record)
        try:
            results = await CreateServers(SqlUnitOfWork(db), _NoCasts())._record_batch(batch)
        finally:
            event.remove(db.writer, "before_cursor_execute", record)

        assert all(isinstance(r, CreateServerResult) for r in results[:3])
        for refused in results[3:]:
            assert isinstance(refused, NotFound) and refused.field == "key_name"
            assert str(refused) == str(results[3])
        with db.begin_read() as connection:
            stored = connection.exec_driver_sql("SELECT DISTINCT key_data FROM instances").all()
        assert stored == [(key.public_key,)]

        assert _reads_of(statements, r"\bFROM keypairs\b") == 2  # "k" and "missing"
        assert _reads_of(statements, r"\bFROM server_groups\b") == 1
        assert _reads_of(statements, r"WHERE compute_nodes\.host = ") == 1
    finally:
        db.close()
