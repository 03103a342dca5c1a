"""The API's adapters over the database store: opportunities and trades, and minted API tokens.

The store is synchronous (one short transaction per call); these adapters run each call in a
worker thread so the event loop never blocks, and translate store errors into the API's
(NotFound → 404, a bad cursor → 400).  The token list is cached for a couple of seconds, since
it is read on every authenticated request; a new or removed token takes effect within that time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mevstack.api.auth import TokenRecord
from mevstack.api.view import BadRequest, JsonObject, NotFound, Page, UnavailableView
from mevstack.store import Store, StoreError

TOKEN_CACHE_S = 2.0


class StoreTokens:
    """``mevstack token create`` writes here; the authenticator reads (TokenStore Protocol)."""

    def __init__(self, store: Store, *, cache_s: float = TOKEN_CACHE_S) -> None:
        self.store = store
        self.cache_s = cache_s
        self._cached: tuple[float, list[TokenRecord]] | None = None

    async def api_tokens(self) -> list[TokenRecord]:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.cache_s:
            return self._cached[1]
        rows = await asyncio.to_thread(self.store.list_api_tokens)
        records = [TokenRecord(r.name, tuple(r.scopes), r.sha256) for r in rows]
        self._cached = (now, records)
        return records

    async def add_api_token(self, record: TokenRecord) -> None:
        await asyncio.to_thread(self.store.add_api_token, record.name, record.sha256, record.scopes)
        self._cached = None


class StoreView(UnavailableView):
    """Opportunities and trades from the store; the live features are still unavailable."""

    def __init__(self, store: Store, source: str = "engine") -> None:
        super().__init__(source)
        self.store = store

    async def opportunities(
        self, *, chain: str | None, kind: str | None, status: str | None, limit: int
    ) -> list[JsonObject]:
        return await asyncio.to_thread(
            self.store.list_opportunities, chain=chain, kind=kind, status=status, limit=limit
        )

    async def opportunity(self, opportunity_id: str) -> JsonObject:
        found = await asyncio.to_thread(self.store.get_opportunity, opportunity_id)
        if found is None:
            raise NotFound(f"no opportunity {opportunity_id!r}")
        return found

    async def trades(
        self, *, chain: str | None, status: str | None, cursor: str | None, limit: int
    ) -> Page:
        try:
            page = await asyncio.to_thread(
                self.store.list_trades, chain=chain, status=status, cursor=cursor, limit=limit
            )
        except StoreError as exc:
            if "cursor" in str(exc):
                raise BadRequest(str(exc)) from None
            raise
        return Page([t.to_json() for t in page.items], page.next_cursor)

    async def trade(self, trade_id: str) -> JsonObject:
        found: Any = await asyncio.to_thread(self.store.get_trade, trade_id)
        if found is None:
            raise NotFound(f"no trade {trade_id!r}")
        result: JsonObject = found.to_json()
        return result
