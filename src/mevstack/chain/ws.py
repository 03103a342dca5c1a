"""WebSocket JSON-RPC subscriptions (``newHeads``, ``logs``, ``newPendingTransactions``).

Owns one WebSocket connection to one node and the subscriptions made over it.  When the
connection drops, it reconnects with capped exponential backoff and re-sends every
``eth_subscribe``, mapping the node's new subscription ids back to the same
:class:`Subscription` objects, so consumers never notice except for a ``RESUBSCRIBED`` marker in
their queue: notifications sent while the link was down are lost by the protocol itself, and the
marker tells a consumer to backfill (the head stream does that by block number).  Every call has a
deadline.  Queues are bounded and a full queue blocks the reader (back-pressure), never drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from mevstack.chain.errors import RpcError, RpcTimeout, RpcTransportError
from mevstack.chain.redact import redact_url
from mevstack.chain.rpc import error_from_object

log = logging.getLogger(__name__)

SubscriptionKind = Literal["newHeads", "logs", "newPendingTransactions"]


class _Marker:
    def __repr__(self) -> str:
        return "RESUBSCRIBED"


RESUBSCRIBED: Final = _Marker()


@dataclass(eq=False)
class Subscription:
    kind: SubscriptionKind
    params: dict[str, Any] | None = None
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(maxsize=1024))
    server_id: str | None = None

    async def get(self) -> Any:
        """The next notification ``result``, or ``RESUBSCRIBED`` after a reconnect."""
        return await self.queue.get()


class WsClient:
    """One node's WebSocket; ``start()`` it, ``subscribe()`` any time, ``aclose()`` at the end."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> None:
        self.url = url
        self.safe_url = redact_url(url)
        self.timeout = timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connects = 0
        self.connected = asyncio.Event()
        self._ids = itertools.count(1)
        self._subs: list[Subscription] = []
        self._by_server_id: dict[str, Subscription] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._conn: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> WsClient:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"ws {self.safe_url}")
        return self

    async def wait_connected(self, time_limit: float | None = None) -> None:
        limit = self.timeout if time_limit is None else time_limit
        try:
            async with asyncio.timeout(limit):
                await self.connected.wait()
        except TimeoutError as exc:
            raise RpcTimeout(f"{self.safe_url}: websocket not connected within {limit:g}s") from exc

    async def subscribe(
        self, kind: SubscriptionKind, params: dict[str, Any] | None = None
    ) -> Subscription:
        sub = Subscription(kind, params)
        self._subs.append(sub)
        if self._conn is not None and self.connected.is_set():
            try:
                await self._subscribe_on(self._conn, sub)
            except RpcTransportError:
                pass  # the link is going down; the reconnect subscribes it
            except RpcError:
                self._subs.remove(sub)  # the node refuses this subscription: say so, once
                raise
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        if sub.server_id is not None:
            self._by_server_id.pop(sub.server_id, None)
            if self._conn is not None:
                with contextlib.suppress(RpcTransportError):
                    await self._call(self._conn, "eth_unsubscribe", [sub.server_id])

    async def request(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call over the socket (waits for the connection within the deadline)."""
        await self.wait_connected()
        assert self._conn is not None
        return await self._call(self._conn, method, params)

    async def _call(self, conn: ClientConnection, method: str, params: list[Any]) -> Any:
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            async with asyncio.timeout(self.timeout):
                await conn.send(
                    orjson.dumps(
                        {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
                    ).decode()
                )
                return await future
        except TimeoutError as exc:
            raise RpcTimeout(
                f"{self.safe_url}: {method}: no answer within {self.timeout:g}s"
            ) from exc
        except WebSocketException as exc:
            raise RpcTransportError(f"{self.safe_url}: {method}: {type(exc).__name__}") from exc
        finally:
            self._pending.pop(call_id, None)

    async def _subscribe_on(self, conn: ClientConnection, sub: Subscription) -> None:
        params: list[Any] = [sub.kind] if sub.params is None else [sub.kind, sub.params]
        server_id = await self._call(conn, "eth_subscribe", params)
        sub.server_id = str(server_id)
        self._by_server_id[sub.server_id] = sub

    async def _run(self) -> None:
        backoff = self.min_backoff
        while True:
            try:
                async with connect(
                    self.url, open_timeout=self.timeout, max_size=2**24, ping_interval=20.0
                ) as conn:
                    self._conn = conn
                    reader = asyncio.create_task(self._read(conn))
                    try:
                        self._by_server_id.clear()
                        for sub in list(self._subs):
                            try:
                                await self._subscribe_on(conn, sub)
                            except RpcTransportError:
                                raise
                            except RpcError as exc:
                                log.warning(
                                    "%s: %s subscription refused: %s", self.safe_url, sub.kind, exc
                                )
                        self.connects += 1
                        self.connected.set()
                        backoff = self.min_backoff
                        if self.connects > 1:
                            for sub in list(self._subs):
                                await sub.queue.put(RESUBSCRIBED)
                        await reader
                    finally:
                        reader.cancel()
                        with contextlib.suppress(BaseException):
                            await reader
            except (OSError, WebSocketException, RpcTransportError, TimeoutError) as exc:
                log.info("%s: websocket down (%s), reconnecting", self.safe_url, type(exc).__name__)
            except Exception:  # whatever a node sends, the connection loop must survive it
                log.exception("%s: websocket loop error, reconnecting", self.safe_url)
            finally:
                self._conn = None
                self.connected.clear()
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(
                            RpcTransportError(f"{self.safe_url}: websocket closed")
                        )
            await asyncio.sleep(backoff)  # reconnect backoff, bounded
            backoff = min(self.max_backoff, backoff * 2)

    async def _read(self, conn: ClientConnection) -> None:
        async for raw in conn:
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("method") == "eth_subscription":
                params = message.get("params") or {}
                sub = self._by_server_id.get(str(params.get("subscription")))
                if sub is not None:
                    await sub.queue.put(params.get("result"))
                continue
            future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if future is None or future.done():
                continue
            if message.get("error") is not None:
                future.set_exception(error_from_object(message["error"]))
            else:
                future.set_result(message.get("result"))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
