"""Opening a database: URL normalisation, engine settings, and upgrading it to migration head.

Migrations (``store/migrations/versions``) are the only way the schema changes.  ``upgrade``
runs under a lock (a PostgreSQL advisory lock; SQLite's write lock through BEGIN IMMEDIATE) so
two processes opening one database at once cannot both create the tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from mevstack.errors import MevstackError
from mevstack.obs.log import redact_text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "mevstack_alembic_version"
# Any constant works; it only has to be the same for every mevstack process.
_PG_LOCK_ID = 0x6D657673  # "mevs"
SQLITE_BUSY_TIMEOUT_MS = 5000
_IMMEDIATE = "mevstack_begin_immediate"


class StoreError(MevstackError):
    """The database cannot do what was asked (bad URL, unreachable, bad record, not found)."""


def normalize_url(url: str) -> URL:
    """A SQLAlchemy URL for ``url``; plain ``postgresql://`` uses psycopg 3 (the driver shipped)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"bad database URL {redact_text(url)!r}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise StoreError(
        f"unsupported database URL {redact_text(url)!r} (use sqlite:///FILE or postgresql://...)"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module, which would otherwise run DDL
    # outside any transaction; SQLAlchemy's BEGIN (below) then covers everything.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the engine writes; the busy timeout makes writers queue
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front, for the migration run only; ordinary
    # transactions stay DEFERRED so readers never wait for the writer under WAL.
    immediate = connection.info.get(_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_store_engine(url: str) -> Engine:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:")
        if not in_memory:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {
            "connect_args": {
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
            }
        }
        if in_memory:
            kwargs["poolclass"] = StaticPool  # one shared connection, or each sees its own DB
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        parsed, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5}
    )


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None, "migrations directory has no head"
    return head


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction; on SQLite it takes the write lock at BEGIN (IMMEDIATE).

    A deferred SQLite transaction that reads and then writes fails at once with "database is
    locked" when another writer committed in between (the busy timeout does not apply to that
    upgrade); taking the lock up front makes concurrent writers queue instead.  Driver errors
    become one-line StoreErrors, except IntegrityError, which callers turn into Conflict.
    """
    try:
        with engine.connect() as connection:
            connection.info[_IMMEDIATE] = True
            try:
                with connection.begin():
                    yield connection
            finally:
                connection.info.pop(_IMMEDIATE, None)
    except IntegrityError:
        raise
    except DBAPIError as exc:
        raise StoreError(f"database error: {first_line(exc)}") from None


@contextlib.contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads, with driver errors turned into one-line StoreErrors."""
    try:
        with engine.connect() as connection:
            yield connection
    except DBAPIError as exc:
        raise StoreError(f"database error: {first_line(exc)}") from None


def upgrade_to_head(engine: Engine, revision: str = "head") -> None:
    """Apply every pending migration (a no-op when the database is already at head).

    ``revision`` is for tests of the migrations themselves (upgrade part way, then on).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with write_transaction(engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except StoreError as exc:
        raise StoreError(
            f"database {redact_text(engine.url.render_as_string(hide_password=True))} "
            f"unavailable: {str(exc).removeprefix('database error: ')}"
        ) from None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__
