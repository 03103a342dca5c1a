"""Token metadata and safety verdicts: read once from the chain, kept in a cache.

The cache is anything with ``get_token``/``put_token`` (:class:`TokenCache`): memory by default,
or the store (``StoreTokenCache`` adapts :class:`mevstack.store.store.Store`, whose ``tokens``
table keeps symbol, decimals and the ``safe`` verdict across restarts).  Whether a token is a
plain ERC-20 (no fee on transfer, no rebasing, no blocking) is decided by an
:data:`UnsafeTokenDetector`, a simulated transfer round trip the execution layer provides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mevstack.store.store import Store


@dataclass(frozen=True, slots=True)
class TokenMeta:
    """A token's metadata, read once from the chain."""

    address: str
    symbol: str
    decimals: int
    safe: bool | None = None  # None: not judged yet


class TokenCache(Protocol):
    """Where token metadata is kept between runs (the store, through StoreTokenCache)."""

    def get_token(self, chain_id: int, address: str) -> TokenMeta | None: ...

    def put_token(self, chain_id: int, meta: TokenMeta) -> None: ...


class MemoryTokenCache:
    """A TokenCache in memory (the default when no store is wired)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[int, str], TokenMeta] = {}

    def get_token(self, chain_id: int, address: str) -> TokenMeta | None:
        return self._tokens.get((chain_id, address.lower()))

    def put_token(self, chain_id: int, meta: TokenMeta) -> None:
        self._tokens[(chain_id, meta.address.lower())] = meta


# Returns a reason when the token is not a plain ERC-20 (fee on transfer, rebasing, blocking),
# None when a simulated round trip behaved exactly.  Execution provides the simulator.
UnsafeTokenDetector = Callable[[str], Awaitable[str | None]]


class StoreTokenCache:
    """The store's ``tokens`` table as a TokenCache."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_token(self, chain_id: int, address: str) -> TokenMeta | None:
        info = self.store.get_token(chain_id, address)
        if info is None:
            return None
        return TokenMeta(info.address, info.symbol, info.decimals, info.safe)

    def put_token(self, chain_id: int, meta: TokenMeta) -> None:
        from mevstack.store.records import TokenInfo

        self.store.put_token(
            TokenInfo(chain_id, meta.address, meta.symbol, meta.decimals, safe=meta.safe)
        )
