"""Which pools a chain trades on: discovery from factory logs, token metadata, and admission rules.

Discovery reads each configured factory's creation events in log-range chunks that adapt to the
node (halve on a "too many results"/range error, grow again after successes).  Token decimals and
symbols are read once (batched) and kept in a cache the caller provides (the store, or memory).
A pool is admitted when both tokens are known, neither is marked unsafe by the detector (a
simulated transfer round trip provided by the executor), both are in the allowlist if one is set,
and it holds at least the chain's minimum liquidity of a token that has a threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from mevstack.chain.errors import RpcError, RpcResponseError
from mevstack.chain.rpc import JsonRpc
from mevstack.market import abi
from mevstack.market.base import DexSpec, Log, PoolInfo, PoolKind, PoolState
from mevstack.market.errors import MarketError
from mevstack.market.pools import KINDS, V2PoolState, V3PoolState
from mevstack.market.state import PoolStore, load_pools
from mevstack.market.tokens import (
    MemoryTokenCache,
    TokenCache,
    TokenMeta,
    UnsafeTokenDetector,
)

__all__ = ["MemoryTokenCache", "PoolRegistry", "TokenCache", "TokenMeta", "UnsafeTokenDetector"]

log = logging.getLogger(__name__)

_RANGE_ERROR_WORDS = (
    "too many",
    "range",
    "limit exceeded",
    "query returned more than",
    "response size",
    "exceed",
)
_DECIMALS = abi.selector("decimals()")
_SYMBOL = abi.selector("symbol()")


def _is_range_error(error: RpcError) -> bool:
    if not isinstance(error, RpcResponseError):
        return False
    text = error.message.lower()
    return any(word in text for word in _RANGE_ERROR_WORDS)


async def get_logs_adaptive(
    rpc: JsonRpc,
    address: str,
    topic0: str,
    from_block: int,
    to_block: int,
    *,
    chunk: int = 10_000,
    max_chunk: int = 100_000,
) -> list[Log]:
    """Every log of ``address`` with ``topic0`` in [from_block, to_block], in node-sized chunks."""
    logs: list[Log] = []
    start = from_block
    size = max(1, chunk)
    while start <= to_block:
        end = min(to_block, start + size - 1)
        try:
            found = await rpc.request(
                "eth_getLogs",
                [
                    {
                        "address": address,
                        "topics": [topic0],
                        "fromBlock": hex(start),
                        "toBlock": hex(end),
                    }
                ],
            )
        except RpcError as exc:
            if _is_range_error(exc) and end > start:
                size = max(1, (end - start + 1) // 2)
                continue
            raise
        logs.extend(found)
        start = end + 1
        size = min(max_chunk, size * 2)
    return logs


def _decode_symbol(data: str) -> str:
    body = data[2:]
    if len(body) >= 192:
        try:
            length = int(body[64:128], 16)
            raw = bytes.fromhex(body[128 : 128 + 2 * length])
            return raw.decode("utf-8", errors="replace")
        except ValueError:
            pass
    if len(body) == 64:  # bytes32 symbols (old tokens)
        return bytes.fromhex(body).rstrip(b"\0").decode("utf-8", errors="replace")
    return ""


def virtual_reserves(state: PoolState) -> tuple[int, int]:
    """Token amounts the pool can be measured by: V2 reserves; V3 in-range virtual reserves."""
    if isinstance(state, V2PoolState):
        return state.reserve0, state.reserve1
    if isinstance(state, V3PoolState):
        if state.sqrt_price_x96 == 0:
            return 0, 0
        return (
            (state.liquidity << 96) // state.sqrt_price_x96,
            (state.liquidity * state.sqrt_price_x96) >> 96,
        )
    raise MarketError(f"no liquidity measure for pool kind {state.kind}")


def has_min_liquidity(state: PoolState, thresholds: Mapping[str, int]) -> bool:
    """Whether the pool holds at least the threshold of one of its tokens that has one.

    Without thresholds every pool passes; with thresholds, a pool of two unthresholded tokens
    fails (that is what keeps spam pools out).
    """
    if not thresholds:
        return True
    lowered = {k.lower(): v for k, v in thresholds.items()}
    r0, r1 = virtual_reserves(state)
    for token, amount in ((state.token0, r0), (state.token1, r1)):
        need = lowered.get(token.lower())
        if need is not None and amount >= need:
            return True
    return False


class PoolRegistry:
    """Finds, filters and loads the pools of one chain's configured DEXes into a PoolStore."""

    def __init__(
        self,
        rpc: JsonRpc,
        dexes: Sequence[DexSpec],
        *,
        chain: str = "",
        chain_id: int = 0,
        kinds: Mapping[str, PoolKind] = KINDS,
        token_cache: TokenCache | None = None,
        unsafe_detector: UnsafeTokenDetector | None = None,
        allowlist: Iterable[str] | None = None,
        min_liquidity: Mapping[str, int] | None = None,
    ) -> None:
        for dex in dexes:
            if dex.kind not in kinds:
                raise MarketError(f"dex {dex.name}: unknown kind {dex.kind!r}")
        self.rpc = rpc
        self.dexes = list(dexes)
        self.chain = chain
        self.chain_id = chain_id
        self.kinds = dict(kinds)
        self.tokens: TokenCache = token_cache or MemoryTokenCache()
        self.unsafe_detector = unsafe_detector
        self.allowlist = {a.lower() for a in allowlist} if allowlist is not None else None
        self.min_liquidity = dict(min_liquidity or {})
        self.unsafe: dict[str, str] = {}  # token (lower) -> reason
        self._by_factory = {d.factory.lower(): d for d in self.dexes}

    async def discover(self, from_block: int, to_block: int) -> list[PoolInfo]:
        """Every pool the configured factories created in the range (address-checked)."""
        infos: list[PoolInfo] = []
        for dex in self.dexes:
            kind = self.kinds[dex.kind]
            for entry in await get_logs_adaptive(
                self.rpc, dex.factory, kind.creation_topic, from_block, to_block
            ):
                info = self._verified(dex, kind.decode_creation(dex, entry))
                if info is not None:
                    infos.append(info)
        return infos

    def _verified(self, dex: DexSpec, info: PoolInfo) -> PoolInfo | None:
        """The pool unless its address contradicts the configured init code hash."""
        expected = dex.expected_address(info.token0, info.token1, info.fee)
        if expected is None or expected == info.address:
            return info
        log.warning(
            "dex %s: pool %s is not where the init code hash puts it (%s); ignored",
            dex.name,
            info.address,
            expected,
        )
        return None

    async def token_metadata(self, addresses: Iterable[str]) -> dict[str, TokenMeta]:
        """Metadata of each token (lower-case keys), read once in one batch, then cached."""
        out: dict[str, TokenMeta] = {}
        missing: list[str] = []
        for address in dict.fromkeys(addresses):
            cached = self.tokens.get_token(self.chain_id, address)
            if cached is not None:
                out[address.lower()] = cached
            else:
                missing.append(address)
        if not missing:
            return out
        calls: list[tuple[str, list[Any]]] = []
        for address in missing:
            calls.append(("eth_call", [{"to": address, "data": _DECIMALS}, "latest"]))
            calls.append(("eth_call", [{"to": address, "data": _SYMBOL}, "latest"]))
        results = await self.rpc.batch(calls)
        for i, address in enumerate(missing):
            dec, sym = results[2 * i], results[2 * i + 1]
            if isinstance(dec, RpcError) or not isinstance(dec, str) or len(dec) < 66:
                self.unsafe[address.lower()] = "decimals() is missing"
                continue
            decimals = int(dec[2:66], 16)
            if decimals > 255:
                self.unsafe[address.lower()] = "decimals() is not a uint8"
                continue
            symbol = _decode_symbol(sym) if isinstance(sym, str) else ""
            meta = TokenMeta(address, symbol, decimals)
            self.tokens.put_token(self.chain_id, meta)
            out[address.lower()] = meta
        return out

    async def check_tokens(self, known: Mapping[str, TokenMeta]) -> None:
        """Judge each token once: a verdict in the cache stands, else the detector decides."""
        if self.unsafe_detector is None:
            return
        for address, meta in known.items():
            if address in self.unsafe:
                continue
            if meta.safe is not None:
                if not meta.safe:
                    self.unsafe[address] = "marked unsafe by an earlier check"
                continue
            reason = await self.unsafe_detector(address)
            if reason:
                self.unsafe[address] = reason
            self.tokens.put_token(self.chain_id, replace(meta, safe=not reason))

    def admissible_tokens(self, info: PoolInfo, known: Mapping[str, TokenMeta]) -> bool:
        for token in (info.token0.lower(), info.token1.lower()):
            if token not in known or token in self.unsafe:
                return False
            if self.allowlist is not None and token not in self.allowlist:
                return False
        return True

    async def admit(
        self, infos: Sequence[PoolInfo], block_number: int
    ) -> list[tuple[PoolInfo, PoolState]]:
        """Token checks, then a batched load at ``block_number``, then the liquidity filter."""
        tokens = [t for i in infos for t in (i.token0, i.token1)]
        known = await self.token_metadata(tokens)
        await self.check_tokens(known)
        candidates = [i for i in infos if self.admissible_tokens(i, known)]
        loaded = await load_pools(self.rpc, self.kinds, candidates, block_number)
        return [(i, s) for i, s in loaded if has_min_liquidity(s, self.min_liquidity)]

    async def build_store(
        self, block_number: int, block_hash: str, *, from_block: int = 0, max_history: int = 128
    ) -> PoolStore:
        """Cold start: discover up to ``block_number``, admit, load, and return a PoolStore."""
        store = PoolStore(self.kinds, chain=self.chain, max_history=max_history)
        store.set_head(block_number, block_hash)
        for info, state in await self.admit(
            await self.discover(from_block, block_number), block_number
        ):
            store.put(info, state)
        return store

    async def on_block(
        self, store: PoolStore, number: int, block_hash: str, logs: Sequence[Log]
    ) -> set[str]:
        """Apply a block's logs, then admit pools its factories created (read at this block)."""
        changed = store.apply_block(number, block_hash, logs)
        created: list[PoolInfo] = []
        for entry in logs:
            dex = self._by_factory.get(str(entry.get("address", "")).lower())
            topics = entry.get("topics") or []
            if dex is None or entry.get("removed") or not topics:
                continue
            kind = self.kinds[dex.kind]
            if topics[0] == kind.creation_topic:
                info = self._verified(dex, kind.decode_creation(dex, entry))
                if info is not None:
                    created.append(info)
        for info, state in await self.admit(created, number):
            store.put(info, state)
            changed.add(info.address.lower())
        return changed
