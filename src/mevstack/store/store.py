"""The repository: every read and write of opportunities, trades, tokens, audit, API tokens, state.

The API is synchronous on a pooled SQLAlchemy engine.  Async callers use ``asyncio.to_thread``:
each call is one short transaction, SQLite has no real async driver (aiosqlite is a thread
anyway), and one code path serves the CLI, the tests and the engine alike.  Inputs are
validated here, so a bad record is a StoreError with one clear line, never a driver traceback.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from mevstack.store import tables as t
from mevstack.store.migrate import (
    StoreError,
    create_store_engine,
    current_revision,
    read_connection,
    upgrade_to_head,
    write_transaction,
)
from mevstack.store.records import (
    API_SCOPES,
    OPPORTUNITY_KINDS,
    OPPORTUNITY_STATUSES,
    ROUTES,
    TRADE_STATUSES,
    ApiTokenRecord,
    AuditEntry,
    TokenInfo,
    Trade,
    TradePage,
)
from mevstack.store.types import WEI_DIGITS

MAX_LIMIT = 1000
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_INT_RE = re.compile(r"^-?[0-9]+$")


class NotFound(StoreError):
    """No record with that key."""


class Conflict(StoreError):
    """A record with that key (or unique value) already exists."""


def _now() -> datetime:
    return datetime.now(UTC)


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise StoreError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _parse_time(value: Any, key: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise StoreError(f"opportunity {key}: not an ISO-8601 time: {value!r}") from None
    else:
        raise StoreError(f"opportunity {key}: expected an ISO-8601 string")
    if moment.tzinfo is None:
        raise StoreError(f"opportunity {key}: time without a timezone: {value!r}")
    return moment.astimezone(UTC)


def _parse_wei(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise StoreError(f"{key}: expected a decimal string of an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_RE.match(value):
        number = int(value)
    else:
        raise StoreError(f"{key}: expected a decimal string of an integer, got {value!r}")
    if len(str(abs(number))) > WEI_DIGITS:
        raise StoreError(f"{key}: {value} does not fit in 78 digits")
    return number


def _int_field(doc: Mapping[str, Any], key: str, *, optional: bool = False) -> int | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreError(f"opportunity {key}: expected a non-negative integer, got {value!r}")
    return value


def _str_field(doc: Mapping[str, Any], key: str, allowed: frozenset[str] | None = None) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise StoreError(f"opportunity {key}: expected a non-empty string, got {value!r}")
    if allowed is not None and value not in allowed:
        raise StoreError(f"opportunity {key}: {value!r} is not one of {', '.join(sorted(allowed))}")
    return value


def _check_wei_fields(trade: Trade) -> None:
    for name in ("amount_in", "expected_profit", "realized_profit", "gas_cost_wei", "net_pnl_wei"):
        value = getattr(trade, name)
        if value is not None:
            _parse_wei(value, f"trade {name}")


def encode_cursor(created_at: datetime, trade_id: str) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{trade_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, trade_id = raw.split("|", 1)
        moment = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise StoreError(f"bad cursor {cursor[:40]!r}") from None
    if moment.tzinfo is None:
        raise StoreError(f"bad cursor {cursor[:40]!r}")
    return moment, trade_id


_OPPORTUNITY_COLUMNS = (
    "id",
    "chain",
    "chain_id",
    "kind",
    "block_number",
    "status",
    "detected_at",
    "expires_at_block",
    "net_profit_wei",
    "document",
    "updated_at",
)


def _opportunity_row(document: Mapping[str, Any]) -> dict[str, Any]:
    """The opportunities row of a published Opportunity document, validated."""
    if not isinstance(document, Mapping):
        raise StoreError("opportunity: expected a JSON object")
    opportunity_id = _str_field(document, "id")
    if len(opportunity_id) > 128:
        raise StoreError("opportunity id: longer than 128 characters")
    return {
        "id": opportunity_id,
        "chain": _str_field(document, "chain"),
        "chain_id": _int_field(document, "chain_id"),
        "kind": _str_field(document, "kind", OPPORTUNITY_KINDS),
        "block_number": _int_field(document, "block_number"),
        "status": _str_field(document, "status", OPPORTUNITY_STATUSES),
        "detected_at": _parse_time(document.get("detected_at"), "detected_at"),
        "expires_at_block": _int_field(document, "expires_at_block", optional=True),
        "net_profit_wei": _parse_wei(document.get("net_profit_wei"), "net_profit_wei"),
        "document": dict(document),
        "updated_at": _now(),
    }


class Store:
    """One database.  ``Store.open(url)`` migrates it to head; ``close()`` releases the pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._opportunity_upsert: Any = None

    @classmethod
    def open(cls, url: str) -> Store:
        engine = create_store_engine(url)
        try:
            upgrade_to_head(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def revision(self) -> str | None:
        return current_revision(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    # -- opportunities -------------------------------------------------------------------------

    def upsert_opportunity(self, document: Mapping[str, Any]) -> bool:
        """Insert or refresh one Opportunity (its docs/contracts.md JSON document, as published).

        A document from an older block than the stored one is ignored (returns False), so a
        late writer can never roll an opportunity back.
        """
        return self.upsert_opportunities([document]) == 1

    def upsert_opportunities(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """:meth:`upsert_opportunity` for a batch in one transaction (one commit, not one per
        document: a scan publishes several at once); returns how many were written.  Every
        document is validated before anything is written."""
        rows = [_opportunity_row(document) for document in documents]
        if not rows:
            return 0
        stmt = self._upsert_opportunity_stmt()
        written = 0
        with self._begin() as conn:
            for row in rows:
                written += conn.execute(stmt, row).scalar_one_or_none() is not None
        return written

    def _upsert_opportunity_stmt(self) -> Any:
        # Built once per store and bound per row, so SQLAlchemy compiles it once, not per call.
        if self._opportunity_upsert is None:
            stmt = self._insert(t.opportunities)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.opportunities.c.id],
                set_={k: stmt.excluded[k] for k in _OPPORTUNITY_COLUMNS if k != "id"},
                where=t.opportunities.c.block_number <= stmt.excluded.block_number,
            )
            # RETURNING rather than rowcount: drivers disagree on the rowcount of a skipped upsert
            self._opportunity_upsert = stmt.returning(t.opportunities.c.id)
        return self._opportunity_upsert

    def get_opportunity(self, opportunity_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            doc = conn.execute(
                select(t.opportunities.c.document).where(t.opportunities.c.id == opportunity_id)
            ).scalar_one_or_none()
        return None if doc is None else dict(doc)

    def list_opportunities(
        self,
        *,
        chain: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first (by ``detected_at``, then id)."""
        c = t.opportunities.c
        query = select(c.document).order_by(c.detected_at.desc(), c.id.desc())
        if chain is not None:
            query = query.where(c.chain == chain)
        if kind is not None:
            query = query.where(c.kind == kind)
        if status is not None:
            query = query.where(c.status == status)
        with self._read() as conn:
            return [dict(d) for d in conn.execute(query.limit(_limit(limit))).scalars()]

    def set_opportunity_status(self, opportunity_id: str, status: str) -> dict[str, Any]:
        if status not in OPPORTUNITY_STATUSES:
            raise StoreError(f"opportunity status {status!r} is not one of the known statuses")
        c = t.opportunities.c
        with self._begin() as conn:
            doc = conn.execute(
                select(c.document).where(c.id == opportunity_id).with_for_update()
            ).scalar_one_or_none()
            if doc is None:
                raise NotFound(f"no opportunity {opportunity_id!r}")
            new_doc = {**doc, "status": status}
            conn.execute(
                update(t.opportunities)
                .where(c.id == opportunity_id)
                .values(status=status, document=new_doc, updated_at=_now())
            )
        return new_doc

    def prune_opportunities(
        self, *, keep_per_chain: int | None = None, older_than: datetime | None = None
    ) -> int:
        """Delete opportunities beyond the newest ``keep_per_chain`` of each chain and/or
        detected before ``older_than``; returns how many rows went."""
        if keep_per_chain is None and older_than is None:
            raise StoreError("prune: give keep_per_chain, older_than or both")
        c = t.opportunities.c
        deleted = 0
        with self._begin() as conn:
            if older_than is not None:
                if older_than.tzinfo is None:
                    raise StoreError("prune: older_than must carry a timezone")
                deleted += conn.execute(
                    delete(t.opportunities).where(c.detected_at < older_than)
                ).rowcount
            if keep_per_chain is not None:
                if keep_per_chain < 0:
                    raise StoreError("prune: keep_per_chain must be >= 0")
                ranked = select(
                    c.id,
                    func.row_number()
                    .over(partition_by=c.chain, order_by=(c.detected_at.desc(), c.id.desc()))
                    .label("rank"),
                ).subquery()
                doomed = select(ranked.c.id).where(ranked.c.rank > keep_per_chain)
                deleted += conn.execute(delete(t.opportunities).where(c.id.in_(doomed))).rowcount
        return deleted

    # -- trades --------------------------------------------------------------------------------

    def _validate_trade(self, trade: Trade) -> None:
        if not trade.id or len(trade.id) > 128:
            raise StoreError("trade id: expected 1 to 128 characters")
        if trade.status not in TRADE_STATUSES:
            raise StoreError(f"trade status {trade.status!r} is not one of the known statuses")
        if trade.route not in ROUTES:
            raise StoreError(f"trade route {trade.route!r} is not public, private or bundle")
        _check_wei_fields(trade)

    def insert_trade(self, trade: Trade) -> Trade:
        self._validate_trade(trade)
        now = _now()
        stored = dataclasses.replace(
            trade, created_at=trade.created_at or now, updated_at=trade.updated_at or now
        )
        row = {f.name: getattr(stored, f.name) for f in dataclasses.fields(stored)}
        row["tx_hashes"] = list(stored.tx_hashes)
        try:
            with self._begin() as conn:
                conn.execute(insert(t.trades).values(row))
        except IntegrityError:
            raise self._trade_conflict(trade) from None
        return stored

    def _trade_conflict(self, trade: Trade) -> Conflict:
        """Which unique rule a rejected insert broke: the id, or one active trade per opp."""
        if self.get_trade(trade.id) is not None:
            return Conflict(f"trade {trade.id!r} already exists")
        return Conflict(f"opportunity {trade.opportunity_id!r} already has an active trade")

    def update_trade(self, trade_id: str, **changes: Any) -> Trade:
        """Change some fields of a trade (``updated_at`` is set here); returns the new trade."""
        allowed = {f.name for f in dataclasses.fields(Trade)} - {"id", "created_at", "updated_at"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise StoreError(f"trade update: unknown field(s) {', '.join(unknown)}")
        try:
            return self._update_trade(trade_id, changes)
        except IntegrityError:
            # The only unique rule an update can break: one active trade per opportunity.
            current = self.get_trade(trade_id)
            opportunity = None if current is None else current.opportunity_id
            raise Conflict(f"opportunity {opportunity!r} already has an active trade") from None

    def _update_trade(self, trade_id: str, changes: dict[str, Any]) -> Trade:
        with self._begin() as conn:
            row = conn.execute(
                select(t.trades).where(t.trades.c.id == trade_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise NotFound(f"no trade {trade_id!r}")
            current = _trade_from_row(row._mapping)
            if "tx_hashes" in changes:
                changes["tx_hashes"] = tuple(changes["tx_hashes"])
            new = dataclasses.replace(current, **changes, updated_at=_now())
            self._validate_trade(new)
            values = {k: getattr(new, k) for k in (*changes, "updated_at")}
            if "tx_hashes" in values:
                values["tx_hashes"] = list(new.tx_hashes)
            conn.execute(update(t.trades).where(t.trades.c.id == trade_id).values(values))
        return new

    def get_trade(self, trade_id: str) -> Trade | None:
        with self._read() as conn:
            row = conn.execute(select(t.trades).where(t.trades.c.id == trade_id)).one_or_none()
        return None if row is None else _trade_from_row(row._mapping)

    def max_fencing_epoch(self) -> int:
        """The highest execution-lease epoch written on any trade (0 with none)."""
        with self._read() as conn:
            found = conn.execute(select(func.max(t.trades.c.fencing_epoch))).scalar_one_or_none()
        return int(found or 0)

    def list_trades(
        self,
        *,
        chain: str | None = None,
        status: str | None = None,
        opportunity_id: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> TradePage:
        """Newest first, by (created_at, id); pass ``next_cursor`` back for the next page."""
        c = t.trades.c
        query = select(t.trades).order_by(c.created_at.desc(), c.id.desc())
        if chain is not None:
            query = query.where(c.chain == chain)
        if status is not None:
            query = query.where(c.status == status)
        if opportunity_id is not None:
            query = query.where(c.opportunity_id == opportunity_id)
        if cursor:
            at, last_id = decode_cursor(cursor)
            query = query.where(or_(c.created_at < at, and_(c.created_at == at, c.id < last_id)))
        size = _limit(limit)
        with self._read() as conn:
            rows = conn.execute(query.limit(size + 1)).all()
        items = [_trade_from_row(r._mapping) for r in rows[:size]]
        next_cursor = None
        if len(rows) > size:
            last = items[-1]
            assert last.created_at is not None
            next_cursor = encode_cursor(last.created_at, last.id)
        return TradePage(items=items, next_cursor=next_cursor)

    # -- tokens --------------------------------------------------------------------------------

    def put_token(self, token: TokenInfo) -> TokenInfo:
        if not 0 <= token.decimals <= 255:
            raise StoreError(f"token {token.address}: decimals {token.decimals} out of range")
        stored = dataclasses.replace(token, updated_at=_now())
        row = dataclasses.asdict(stored)
        stmt = self._insert(t.tokens).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.tokens.c.chain_id, t.tokens.c.address],
            set_={k: stmt.excluded[k] for k in ("symbol", "decimals", "safe", "updated_at")},
        )
        with self._begin() as conn:
            conn.execute(stmt)
        return stored

    def get_token(self, chain_id: int, address: str) -> TokenInfo | None:
        c = t.tokens.c
        with self._read() as conn:
            row = conn.execute(
                select(t.tokens).where(c.chain_id == chain_id, c.address == address)
            ).one_or_none()
        return None if row is None else TokenInfo(**dict(row._mapping))

    # -- audit ---------------------------------------------------------------------------------

    def audit(
        self, actor: str, action: str, details: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        if not actor or not action:
            raise StoreError("audit: actor and action are required")
        at = _now()
        with self._begin() as conn:
            new_id = conn.execute(
                insert(t.audit_log)
                .values(at=at, actor=actor, action=action, details=dict(details or {}))
                .returning(t.audit_log.c.id)
            ).scalar_one()
        return AuditEntry(
            id=int(new_id), at=at, actor=actor, action=action, details=dict(details or {})
        )

    def list_audit(self, *, actor: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first."""
        c = t.audit_log.c
        query = select(t.audit_log).order_by(c.id.desc()).limit(_limit(limit))
        if actor is not None:
            query = query.where(c.actor == actor)
        with self._read() as conn:
            return [AuditEntry(**dict(r._mapping)) for r in conn.execute(query)]

    # -- API tokens ----------------------------------------------------------------------------

    def add_api_token(self, name: str, sha256: str, scopes: Iterable[str]) -> ApiTokenRecord:
        """Record a token by its SHA-256 hex digest only; the plain token is never stored."""
        scope_t = tuple(sorted(set(scopes)))
        if not name or len(name) > 128:
            raise StoreError("api token name: expected 1 to 128 characters")
        if not _SHA256_RE.match(sha256):
            raise StoreError("api token sha256: expected 64 lowercase hex digits")
        bad = sorted(set(scope_t) - API_SCOPES)
        if bad or not scope_t:
            raise StoreError(f"api token scopes: use read, trade, admin (got {list(scope_t)})")
        record = ApiTokenRecord(name=name, sha256=sha256, scopes=scope_t, created_at=_now())
        try:
            with self._begin() as conn:
                conn.execute(
                    insert(t.api_tokens).values(
                        name=name, sha256=sha256, scopes=list(scope_t), created_at=record.created_at
                    )
                )
        except IntegrityError:
            raise Conflict(
                f"api token {name!r} (or one with the same hash) already exists"
            ) from None
        return record

    def list_api_tokens(self) -> list[ApiTokenRecord]:
        with self._read() as conn:
            rows = conn.execute(select(t.api_tokens).order_by(t.api_tokens.c.name)).all()
        return [_api_token(r._mapping) for r in rows]

    def get_api_token_by_hash(self, sha256: str) -> ApiTokenRecord | None:
        with self._read() as conn:
            row = conn.execute(
                select(t.api_tokens).where(t.api_tokens.c.sha256 == sha256)
            ).one_or_none()
        return None if row is None else _api_token(row._mapping)

    # -- key/value trading state ---------------------------------------------------------------

    def kv_get(self, key: str, default: Any = None) -> Any:
        with self._read() as conn:
            row = conn.execute(
                select(t.kv_state.c.value).where(t.kv_state.c.key == key)
            ).one_or_none()
        return default if row is None else row[0]

    def kv_set(self, key: str, value: Any) -> None:
        if not key or len(key) > 128:
            raise StoreError("kv key: expected 1 to 128 characters")
        stmt = self._insert(t.kv_state).values(key=key, value=value, updated_at=_now())
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.kv_state.c.key],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        with self._begin() as conn:
            conn.execute(stmt)

    # -- plumbing ------------------------------------------------------------------------------

    def _begin(self) -> AbstractContextManager[Connection]:
        return write_transaction(self.engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return read_connection(self.engine)


def _trade_from_row(row: RowMapping) -> Trade:
    values = dict(row)
    values["tx_hashes"] = tuple(values["tx_hashes"] or ())
    return Trade(**values)


def _api_token(row: RowMapping) -> ApiTokenRecord:
    return ApiTokenRecord(
        name=row["name"],
        sha256=row["sha256"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
    )
