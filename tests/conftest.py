from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.db.engine import Database
from services.common.db.migrate import upgrade
from tests.support import postgres


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    try:
        url = postgres.create_database()
    except postgres.PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for this test: {exc}")
    upgrade(url)
    yield url
    postgres.drop_database(url)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The database adapter on the test's SQLite file or PostgreSQL database."""
    database = Database(database_url)
    yield database
    database.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on the local PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url
