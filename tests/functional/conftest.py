from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.db.migrate import upgrade
from tests.support.processes import Service, ServiceSet


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, ServiceSet]]:
    """api, conductor and one compute (test:///default) as three real processes on SQLite."""
    workdir: Path = tmp_path_factory.mktemp("system")
    url = f"sqlite:///{workdir / 'nova.sqlite'}"
    upgrade(url)
    services = ServiceSet(workdir)
    api, _conductor, _computes = services.start_all_in_one(url)
    yield api, services
    codes = services.stop()
    assert codes == {"api": 0, "compute1": 0, "conductor": 0}, codes
