"""Store fixtures: the same tests on a SQLite file and on a throwaway PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import delete

from mevstack.store import Store
from mevstack.store import tables as t


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
