from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.cli.manage import issue_token
from tests.support.processes import Service, ServiceSet
from tests.support.sqlite import copy_database


@dataclass
class System:
    api: Service
    services: ServiceSet
    token: str
    admin_token: str
    database_url: str


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[System]:
    """api, conductor and one compute (test:///default) as three real processes on SQLite."""
    workdir: Path = tmp_path_factory.mktemp("system")
    url = copy_database(migrated_sqlite, workdir / "nova.sqlite")
    _, token = issue_token(url, "demo")
    _, admin_token = issue_token(url, "ops", admin=True)
    services = ServiceSet(workdir)
    api, _conductor, _computes = services.start_all_in_one(url)
    yield System(api, services, token, admin_token, url)
    codes = services.stop()
    assert codes == {"api": 0, "compute1": 0, "conductor": 0}, codes
