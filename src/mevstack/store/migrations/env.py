"""Alembic environment: runs on the connection that ``Store.open`` hands over, online only.

``Store.open`` takes the migration lock and passes its connection in ``config.attributes``; this
file never opens connections or reads an ini file of its own.
"""

from __future__ import annotations

from alembic import context

from mevstack.store.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table=VERSION_TABLE,
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables when a later
    # migration needs it.
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
