"""Async JSON-RPC over HTTP for one endpoint: pooled keep-alive connections, batching, typed errors.

This is the hot path (every pool refresh and simulation goes through it), so it stays thin: bytes
are built with orjson, one httpx POST per call or per batch, and the answer is mapped to the
``result`` or to a typed :mod:`mevstack.chain.errors` exception.  Every call has a total deadline
(connect + send + wait + read), not only httpx's per-phase timeouts, so a node that trickles bytes
cannot hold a caller forever.  URLs in messages are always redacted.  A client that knows its
chain (the endpoint pool's do) times every call and counts every failure by method and kind in
the Prometheus metrics of :mod:`mevstack.obs.engine_metrics`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Protocol

import httpx
import orjson

from mevstack.chain.errors import (
    ExecutionReverted,
    RpcError,
    RpcRateLimited,
    RpcResponseError,
    RpcTimeout,
    RpcTransportError,
    UnknownBlock,
    decode_revert_reason,
)
from mevstack.chain.redact import install_log_redaction, redact_url
from mevstack.obs.engine_metrics import RPC_ERRORS, RPC_LATENCY

install_log_redaction()

_HEADERS = {"content-type": "application/json", "accept": "application/json"}
_RATE_LIMIT_CODES = frozenset({-32005, -32090, 429})
_RATE_LIMIT_WORDS = ("rate limit", "too many requests", "exceeded the quota", "capacity exceeded")
_UNKNOWN_BLOCK_WORDS = (
    "unknown block",
    "header not found",
    "block not found",
    "blockoutofrange",
    "block height is",
    "missing trie node",
)


class JsonRpc(Protocol):
    """What consumers of a node need: the shape both RpcClient and EndpointPool offer."""

    async def request(self, method: str, params: list[Any]) -> Any: ...

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any | RpcError]: ...


def error_from_object(error: Any) -> RpcError:
    """The typed exception for one JSON-RPC ``error`` object as a node sent it."""
    if not isinstance(error, dict):
        return RpcResponseError(-1, f"malformed error object: {str(error)[:200]}")
    code = error.get("code")
    code = code if isinstance(code, int) else -1
    message = str(error.get("message", ""))[:500]
    lowered = message.lower()
    if code == 3 or "revert" in lowered:
        data = _revert_data(error.get("data"))
        reason = decode_revert_reason(data)
        if reason is None and ":" in message:
            reason = message.split(":", 1)[1].strip() or None
        return ExecutionReverted(data, reason, code, message)
    if code in _RATE_LIMIT_CODES or any(word in lowered for word in _RATE_LIMIT_WORDS):
        return RpcRateLimited(f"rate limited: {message}")
    if any(word in lowered for word in _UNKNOWN_BLOCK_WORDS):
        return UnknownBlock(code, message)
    return RpcResponseError(code, message)


_ALREADY_KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")


def is_already_known(message: str) -> bool:
    """Whether a send's error says the node already has this very transaction (an acceptance)."""
    lowered = message.lower().replace(" ", "")
    return any(word.replace(" ", "") in lowered for word in _ALREADY_KNOWN)


def error_kind(error: RpcError) -> str:
    """The ``kind`` label of a failed call in ``mevstack_rpc_errors_total``."""
    if isinstance(error, RpcResponseError) and is_already_known(error.message):
        return "already_known"
    for cls, kind in (
        (RpcTimeout, "timeout"),
        (RpcTransportError, "transport"),
        (RpcRateLimited, "rate_limited"),
        (ExecutionReverted, "reverted"),
        (UnknownBlock, "unknown_block"),
    ):
        if isinstance(error, cls):
            return kind
    return "response"


def _revert_data(raw: Any) -> bytes:
    # Nodes disagree on where revert data lives: a hex string, or {"data": "0x..."}.
    if isinstance(raw, dict):
        raw = raw.get("data")
    if isinstance(raw, str) and raw.startswith("0x"):
        try:
            return bytes.fromhex(raw[2:])
        except ValueError:
            return b""
    return b""


class RpcClient:
    """One JSON-RPC HTTP endpoint.  Safe to share between tasks; close with :meth:`aclose`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 32,
        chain: str | None = None,
    ) -> None:
        self.url = url
        self.chain = chain
        self.safe_url = redact_url(url)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers=_HEADERS,
        )

    def _observe(self, method: str, started: float, error: RpcError | None) -> None:
        if self.chain is None:
            return
        RPC_LATENCY.labels(chain=self.chain, method=method).observe(time.perf_counter() - started)
        if error is not None:
            RPC_ERRORS.labels(chain=self.chain, method=method, kind=error_kind(error)).inc()

    async def request(
        self, method: str, params: list[Any], *, time_limit: float | None = None
    ) -> Any:
        """The ``result`` of one call, or a typed :class:`RpcError`."""
        started = time.perf_counter()
        try:
            result = await self._request(method, params, time_limit)
        except RpcError as exc:
            self._observe(method, started, exc)
            raise
        self._observe(method, started, None)
        return result

    async def _request(self, method: str, params: list[Any], time_limit: float | None) -> Any:
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        )
        answer = await self._post(body, method, time_limit)
        if not isinstance(answer, dict):
            raise RpcTransportError(f"{self.safe_url}: {method}: answer is not a JSON-RPC object")
        if "error" in answer and answer["error"] is not None:
            raise error_from_object(answer["error"])
        if "result" not in answer:
            raise RpcTransportError(f"{self.safe_url}: {method}: answer has no result")
        return answer["result"]

    async def batch(
        self, calls: list[tuple[str, list[Any]]], *, time_limit: float | None = None
    ) -> list[Any | RpcError]:
        """Results in call order from one HTTP request; per-call errors are returned, not raised.

        A failure of the request as a whole (transport, timeout, rate limit) is raised.
        """
        if not calls:
            return []
        started = time.perf_counter()
        try:
            results = await self._batch(calls, time_limit)
        except RpcError as exc:
            self._observe("batch", started, exc)
            raise
        self._observe("batch", started, None)
        return results

    async def _batch(
        self, calls: list[tuple[str, list[Any]]], time_limit: float | None
    ) -> list[Any | RpcError]:
        first = next(self._ids)
        # Reserve a contiguous id block so answers map back by arithmetic, whatever their order.
        for _ in range(len(calls) - 1):
            next(self._ids)
        payload = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        answer = await self._post(orjson.dumps(payload), f"batch of {len(calls)}", time_limit)
        if isinstance(answer, dict) and "error" in answer:
            # Some nodes answer a whole batch with one error object (e.g. rate limits).
            raise error_from_object(answer["error"])
        if not isinstance(answer, list):
            raise RpcTransportError(f"{self.safe_url}: batch answer is not a JSON array")
        missing = RpcTransportError(f"{self.safe_url}: batch answer lacks this call")
        results: list[Any | RpcError] = [missing] * len(calls)
        for item in answer:
            if not isinstance(item, dict):
                continue
            index = item.get("id")
            if not isinstance(index, int) or not 0 <= index - first < len(calls):
                continue
            error = item.get("error")
            if error is not None:
                results[index - first] = error_from_object(error)
            elif "result" in item:
                results[index - first] = item["result"]
        return results

    async def _post(self, body: bytes, what: str, time_limit: float | None) -> Any:
        limit = self.timeout if time_limit is None else time_limit
        try:
            async with asyncio.timeout(limit):
                response = await self._http.post(self.url, content=body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise RpcTimeout(f"{self.safe_url}: {what}: no answer within {limit:g}s") from exc
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise RpcTransportError(f"{self.safe_url}: {what}: {reason}") from exc
        if response.status_code == 429:
            raise RpcRateLimited(f"{self.safe_url}: {what}: HTTP 429")
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise RpcTransportError(
                f"{self.safe_url}: {what}: HTTP {response.status_code}, body is not JSON"
            ) from exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
