"""The hosts an instance is or was placed on, read as a compute's reports are checked."""

from __future__ import annotations

import uuid

import pytest

from services.common.db.engine import Database
from services.common.db.instances import host_history, insert_instances
from services.common.domain import Flavor, Instance, PowerState, VmState, utcnow
from services.common.request_spec import StoredSpec

pytestmark = pytest.mark.timeout(60)

FLAVOR = Flavor(id="1", name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1)


def server(host: str | None, tried: tuple[str, ...] = ()) -> Instance:
    return Instance(
        uuid=str(uuid.uuid4()), id=None, display_name="s", project_id="p", flavor=FLAVOR,
        image_id="img", reservation_id="r-x", vm_state=VmState.ACTIVE, task_state=None,
        power_state=PowerState.RUNNING, host=host, node=host, metadata={},
        created_at=utcnow(), request_spec=StoredSpec(tried_hosts=tried),
    )  # fmt: skip


def test_its_host_and_the_hosts_it_was_tried_on(database_url: str) -> None:
    db = Database(database_url)
    try:
        placed, rescheduled, waiting = server("a"), server("b", ("a", "c")), server(None)
        with db.begin() as connection:
            insert_instances(connection, [placed, rescheduled, waiting])
        unknown = str(uuid.uuid4())
        with db.begin() as connection:
            found = host_history(connection, [placed.uuid, rescheduled.uuid, waiting.uuid, unknown])
            assert host_history(connection, []) == {}
        assert found == {
            placed.uuid: {"a"},
            rescheduled.uuid: {"a", "b", "c"},
            waiting.uuid: frozenset(),
        }
        assert unknown not in found
    finally:
        db.close()
