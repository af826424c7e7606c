from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.db.engine import Database
from services.common.db.migrate import upgrade
from tests.support import postgres
from tests.support.sqlite import copy_database


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite schema, migrated once per session; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("schema") / "nova.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    """A freshly migrated SQLite database of this test's own (a copy: migrating takes long)."""
    return copy_database(migrated_sqlite, tmp_path / "nova.sqlite")


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """A PostgreSQL database migrated once per session: the template each test's is made from."""
    try:
        url = postgres.create_database()
    except postgres.PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for this test: {exc}")
    upgrade(url)
    yield url
    postgres.drop_database(url)


@pytest.fixture
def postgres_url(migrated_postgres: str) -> Iterator[str]:
    url = postgres.create_database(template=migrated_postgres)
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
