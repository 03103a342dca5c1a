"""Persistence: SQLAlchemy tables and Alembic migrations; SQLite by default, PostgreSQL by URL.

``Store.open(url)`` upgrades the database to the newest migration and returns the repository.
"""

from mevstack.store.migrate import StoreError
from mevstack.store.records import ApiTokenRecord, AuditEntry, TokenInfo, Trade, TradePage
from mevstack.store.store import Conflict, NotFound, Store

__all__ = [
    "ApiTokenRecord",
    "AuditEntry",
    "Conflict",
    "NotFound",
    "Store",
    "StoreError",
    "TokenInfo",
    "Trade",
    "TradePage",
]
