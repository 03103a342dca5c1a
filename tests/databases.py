"""Throwaway PostgreSQL databases for tests: created with a random name, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.encode())


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """The URL of a new empty database, dropped (even with open connections) on exit."""
    name = f"mevstack_test_{uuid.uuid4().hex[:16]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
