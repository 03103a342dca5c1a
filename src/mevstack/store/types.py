"""Column types that store exact money and UTC times identically on SQLite and PostgreSQL.

Migrations import these classes, so their storage encoding is frozen: changing it needs a new
migration that rewrites the data, never an edit here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine

WEI_DIGITS = 78  # 2**256 - 1 has 78 decimal digits
_WEI_LIMIT = 10**WEI_DIGITS


class WeiAmount(TypeDecorator[int]):
    """A signed integer with up to 78 digits (every uint256, and negative P&L), exact.

    PostgreSQL: ``NUMERIC(78, 0)``.  SQLite has no exact wide integer (its NUMERIC silently
    becomes a float past 2**63), so the value is stored as text in an encoding whose string order
    is numeric order: ``"1"`` + 78 zero-padded digits for x >= 0, ``"0"`` + the 78-digit
    ``10**78 + x`` for x < 0.  Range filters and ORDER BY therefore work on both.
    """

    impl = String(WEI_DIGITS + 1)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(WEI_DIGITS, 0, asdecimal=True))
        return dialect.type_descriptor(String(WEI_DIGITS + 1))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"wei amounts are ints, got {type(value).__name__}")
        if not -_WEI_LIMIT < value < _WEI_LIMIT:
            raise ValueError(f"wei amount out of range: {value}")
        if dialect.name == "postgresql":
            return Decimal(value)
        if value >= 0:
            return "1" + str(value).zfill(WEI_DIGITS)
        return "0" + str(_WEI_LIMIT + value).zfill(WEI_DIGITS)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return int(value)
        text = str(value)
        magnitude = int(text[1:])
        return magnitude if text[0] == "1" else magnitude - _WEI_LIMIT


def encode_wei_literal(value: int, dialect: Dialect) -> Any:
    """The bound form of ``value`` for comparisons against a WeiAmount column."""
    return WeiAmount().process_bind_param(value, dialect)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in, an aware UTC datetime out, microsecond precision on both DBs."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite stores text; dropping the offset keeps every stored value in one sortable form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
