"""Store fixtures: the same tests on a SQLite file and on a throwaway PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import delete

from mevstack.store import Store
from mevstack.store import tables as t

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.encode())


@pytest.fixture(scope="session")
def fresh_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """Makes URLs of new empty databases ('sqlite' or 'postgresql'); PG ones dropped at the end."""
    created: list[str] = []

    def make(kind: str) -> str:
        name = f"mevstack_test_{uuid.uuid4().hex[:16]}"
        if kind == "sqlite":
            path: Path = tmp_path_factory.mktemp("store") / f"{name}.db"
            return f"sqlite:///{path}"
        _pg_admin(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    yield make
    for name in created:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def session_store(
    request: pytest.FixtureRequest, fresh_url: Callable[[str], str]
) -> Iterator[Store]:
    store = Store.open(fresh_url(request.param))
    yield store
    store.close()


@pytest.fixture
def store(session_store: Store) -> Iterator[Store]:
    """The backend's store, emptied before each test (cheaper than migrating per test)."""
    with session_store.engine.begin() as conn:
        for table in reversed(t.metadata.sorted_tables):
            conn.execute(delete(table))
    yield session_store
