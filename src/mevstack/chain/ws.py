"""WebSocket JSON-RPC subscriptions (``newHeads``, ``logs``, ``newPendingTransactions``) of a chain.

Owns every configured WebSocket URL of one chain, the one connection (the *link*) that serves
subscriptions at a time, and the subscriptions themselves, which outlive any link.  When the link
drops or a URL cannot be connected, the client moves to the next URL in round-robin order, each URL
with its own capped exponential backoff, re-sends every ``eth_subscribe`` there and maps the new
node's subscription ids back to the same :class:`Subscription` objects.  Consumers only see a
``RESUBSCRIBED`` marker in their queue: notifications sent while no link was up are lost by the
protocol itself, and the marker tells a consumer to backfill (the head stream does that by block
number).

* **Chain id.**  Every connect asks ``eth_chainId`` before anything else; a node serving another
  chain is ``wrong_chain`` and carries no subscription and no call (it is asked again only every
  ``max_hold`` seconds, in case its operator fixes it), as the HTTP endpoint pool does.
* **Preference.**  The configured order among URLs in good standing.  While a less preferred URL
  serves, a more preferred one is opened in the background once its hold is over, and takes over
  only when it is connected, chain-checked and subscribed (make before break): nothing is lost in
  the switch, a notification may come twice, so the marker is sent there too.
* **Flapping.**  A URL that fails to connect, or whose link drops within ``stable_after`` seconds,
  earns a strike; the hold before it may take over from a working link doubles with each strike
  (up to ``max_hold``), so a flapping URL cannot keep pulling the stream off a healthy one.  A link
  that lasted ``stable_after`` seconds clears its URL's strikes.

Every call has a deadline.  Queues are bounded and a full queue blocks the reader (back-pressure),
never drops.  URLs reach logs and errors only redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
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

# What a URL that is down, hanging or talking nonsense raises while a link is opened.
_LINK_ERRORS = (OSError, WebSocketException, RpcError, TimeoutError, ValueError, TypeError)
# Notifications that arrive on a link before it takes over are held, then delivered after the
# marker; a node that floods them while we are still subscribing must not grow memory unbounded.
_HELD_MAX = 4096
# A node may send a subscription's first notification right behind its ``eth_subscribe`` answer,
# before the id is registered; kept briefly per id so that it is not lost.
_EARLY_IDS = 16
_EARLY_PER_ID = 64


class _Marker:
    def __repr__(self) -> str:
        return "RESUBSCRIBED"


RESUBSCRIBED: Final = _Marker()


@dataclass(eq=False)
class Subscription:
    kind: SubscriptionKind
    # ``eth_subscribe``'s second parameter: a logs filter, or ``True`` for full pending
    # transactions (geth, reth, anvil) instead of their hashes
    params: dict[str, Any] | bool | None = None
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(maxsize=1024))
    server_id: str | None = None  # the id given by the node of the link serving it now

    async def get(self) -> Any:
        """The next notification ``result``, or ``RESUBSCRIBED`` after a reconnect or a switch."""
        return await self.queue.get()


@dataclass(eq=False)
class WsEndpoint:
    """One configured WebSocket URL and what is known of it (changed by its client only)."""

    url: str
    safe_url: str
    rank: int  # position in the configured order: lower is preferred
    wrong_chain: bool = False
    chain_id: int | None = None  # as the node last reported it
    strikes: int = 0  # failed connects and short-lived links since the last stable link
    failed_at: float | None = None  # event-loop time of the last failure
    connects: int = 0  # links over this URL that served subscriptions
    notifications: int = 0  # notifications delivered from this URL
    last_error: str | None = None


class _WrongChain(Exception):
    def __init__(self, chain_id: int) -> None:
        super().__init__(chain_id)
        self.chain_id = chain_id


@dataclass(eq=False)
class _Link:
    endpoint: WsEndpoint
    conn: ClientConnection
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    server_ids: dict[Subscription, str] = field(default_factory=dict)
    by_server_id: dict[str, Subscription] = field(default_factory=dict)
    refused: set[Subscription] = field(default_factory=set)
    held: list[tuple[Subscription, Any]] = field(default_factory=list)
    early: dict[str, list[Any]] = field(default_factory=dict)  # by ids not registered yet
    active: bool = False  # delivers notifications to queues (else holds them)
    activated_at: float = 0.0
    reader: asyncio.Task[None] | None = None


class WsClient:
    """A chain's WebSockets; ``start()`` it, ``subscribe()`` any time, ``aclose()`` at the end.

    ``urls`` is one URL or the configured list in order of preference.  With ``chain_id`` given,
    a node that reports another chain id is never used.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        chain_id: int | None = None,
        timeout: float = 5.0,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
        stable_after: float = 10.0,
        max_hold: float = 60.0,
    ) -> None:
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise RpcTransportError("no websocket URL given")
        self.endpoints = [
            WsEndpoint(url=u, safe_url=redact_url(u), rank=i) for i, u in enumerate(url_list)
        ]
        self.chain_id = chain_id
        self.timeout = timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.max_hold = max_hold
        self.connects = 0  # links that took over serving, over all URLs
        self.connected = asyncio.Event()
        self._ids = itertools.count(1)
        self._subs: list[Subscription] = []
        self._link: _Link | None = None
        self._links: set[_Link] = set()
        self._task: asyncio.Task[None] | None = None

    # -- public API ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> WsEndpoint | None:
        """The URL serving subscriptions now (None while none is connected)."""
        link = self._link
        return link.endpoint if link is not None and self.connected.is_set() else None

    @property
    def url(self) -> str:
        """The serving URL, or the most preferred one while none serves."""
        return (self.endpoint or self.endpoints[0]).url

    @property
    def safe_url(self) -> str:
        return (self.endpoint or self.endpoints[0]).safe_url

    async def start(self) -> WsClient:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"ws {self.endpoints[0].safe_url}")
        return self

    async def wait_connected(self, time_limit: float | None = None) -> None:
        limit = self.timeout if time_limit is None else time_limit
        try:
            async with asyncio.timeout(limit):
                await self.connected.wait()
        except TimeoutError as exc:
            urls = ", ".join(e.safe_url for e in self.endpoints)
            raise RpcTimeout(f"{urls}: no websocket connected within {limit:g}s") from exc

    async def subscribe(
        self, kind: SubscriptionKind, params: dict[str, Any] | bool | None = None
    ) -> Subscription:
        sub = Subscription(kind, params)
        self._subs.append(sub)
        # Subscribed on whichever link serves when the call ends; a link opened meanwhile
        # picks the subscription up itself before it takes over.
        while (link := self._link) is not None and sub in self._subs:
            if sub in link.server_ids:
                sub.server_id = link.server_ids[sub]
                break
            try:
                await self._subscribe_on(link, sub)
            except RpcTransportError:
                break  # the link is going down; the next one subscribes it
            except RpcError:
                self._subs.remove(sub)  # the node refuses this subscription: say so, once
                raise
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        sub.server_id = None
        for link in list(self._links):
            server_id = link.server_ids.pop(sub, None)
            if server_id is None:
                continue
            link.by_server_id.pop(server_id, None)
            with contextlib.suppress(RpcTransportError):
                await self._call(link, "eth_unsubscribe", [server_id])

    async def request(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call over the serving socket (waits for one within the deadline)."""
        await self.wait_connected()
        link = self._link
        if link is None:
            raise RpcTransportError(f"{self.safe_url}: {method}: websocket closed")
        return await self._call(link, method, params)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for link in list(self._links):
            await self._close(link)
        self._link = None
        self.connected.clear()

    # -- calls on one link ---------------------------------------------------------------------

    async def _call(self, link: _Link, method: str, params: list[Any]) -> Any:
        safe_url = link.endpoint.safe_url
        if link.reader is None or link.reader.done():
            raise RpcTransportError(f"{safe_url}: {method}: websocket closed")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link.pending[call_id] = future
        try:
            async with asyncio.timeout(self.timeout):
                await link.conn.send(
                    orjson.dumps(
                        {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
                    ).decode()
                )
                return await future
        except TimeoutError as exc:
            raise RpcTimeout(f"{safe_url}: {method}: no answer within {self.timeout:g}s") from exc
        except WebSocketException as exc:
            raise RpcTransportError(f"{safe_url}: {method}: {type(exc).__name__}") from exc
        finally:
            link.pending.pop(call_id, None)

    async def _subscribe_on(self, link: _Link, sub: Subscription) -> None:
        params: list[Any] = [sub.kind] if sub.params is None else [sub.kind, sub.params]
        server_id = str(await self._call(link, "eth_subscribe", params))
        if sub not in self._subs:  # unsubscribed while the node was answering
            with contextlib.suppress(RpcError):
                await self._call(link, "eth_unsubscribe", [server_id])
            return
        link.server_ids[sub] = server_id
        link.by_server_id[server_id] = sub
        if link is self._link:
            sub.server_id = server_id
        for item in link.early.pop(server_id, []):
            if link.active:
                link.endpoint.notifications += 1
                await sub.queue.put(item)
            else:
                link.held.append((sub, item))

    async def _subscribe_all(self, link: _Link) -> None:
        """Every live subscription on ``link``; returns right after finding none missing."""
        while missing := [
            s for s in self._subs if s not in link.server_ids and s not in link.refused
        ]:
            for sub in missing:
                try:
                    await self._subscribe_on(link, sub)
                except RpcTransportError:
                    raise
                except RpcError as exc:
                    link.refused.add(sub)
                    log.warning(
                        "%s: %s subscription refused: %s", link.endpoint.safe_url, sub.kind, exc
                    )

    async def _read(self, link: _Link) -> None:
        try:
            async for raw in link.conn:
                try:
                    message = orjson.loads(raw)  # depth-bounded: a node cannot nest us to death
                except orjson.JSONDecodeError as exc:
                    log.warning(
                        "%s: dropped a message that is not JSON (%s)", link.endpoint.safe_url, exc
                    )
                    continue
                if not isinstance(message, dict):
                    continue
                if message.get("method") == "eth_subscription":
                    params = message.get("params") or {}
                    server_id = str(params.get("subscription"))
                    sub = link.by_server_id.get(server_id)
                    if sub is None:
                        _keep_early(link.early, server_id, params.get("result"))
                        continue
                    if link.active:
                        link.endpoint.notifications += 1
                        await sub.queue.put(params.get("result"))
                    elif len(link.held) < _HELD_MAX:
                        link.held.append((sub, params.get("result")))
                    continue
                future = link.pending.get(message.get("id"))  # type: ignore[arg-type]
                if future is None or future.done():
                    continue
                if message.get("error") is not None:
                    future.set_exception(error_from_object(message["error"]))
                else:
                    future.set_result(message.get("result"))
        except (OSError, WebSocketException) as exc:
            link.endpoint.last_error = f"{link.endpoint.safe_url}: {type(exc).__name__}"
        except Exception:  # whatever a node sends, only this link may end because of it
            log.exception("%s: websocket reader failed", link.endpoint.safe_url)
        finally:
            for future in link.pending.values():
                if not future.done():
                    future.set_exception(
                        RpcTransportError(f"{link.endpoint.safe_url}: websocket closed")
                    )
            if link is self._link:
                self.connected.clear()  # the head stream polls from now until the next link

    # -- opening, taking over, closing ---------------------------------------------------------

    async def _open(self, endpoint: WsEndpoint) -> _Link:
        conn = await connect(
            endpoint.url,
            open_timeout=self.timeout,
            close_timeout=min(self.timeout, 1.0),
            max_size=2**24,
            ping_interval=20.0,
        )
        link = _Link(endpoint, conn)
        self._links.add(link)
        link.reader = asyncio.create_task(self._read(link), name=f"ws-read {endpoint.safe_url}")
        try:
            if self.chain_id is not None:
                reported = int(await self._call(link, "eth_chainId", []), 16)
                endpoint.chain_id = reported
                if reported != self.chain_id:
                    raise _WrongChain(reported)
            await self._subscribe_all(link)
        except BaseException:
            await self._close(link)
            raise
        return link

    async def _try_open(self, endpoint: WsEndpoint) -> _Link | None:
        """A subscribed link to ``endpoint``, or None with the failure recorded."""
        try:
            link = await self._open(endpoint)
        except _WrongChain as exc:
            if not endpoint.wrong_chain:
                log.warning(
                    "%s: websocket serves chain id %d, not %s: not used",
                    endpoint.safe_url,
                    exc.chain_id,
                    self.chain_id,
                )
            endpoint.wrong_chain = True
            self._fail(endpoint, f"{endpoint.safe_url}: wrong chain id {exc.chain_id}")
            return None
        except _LINK_ERRORS as exc:
            self._fail(endpoint, _describe(endpoint, exc))
            # Said once per outage; the retries that follow every backoff are debug chatter.
            log.log(
                logging.INFO if endpoint.strikes == 1 else logging.DEBUG, "%s", endpoint.last_error
            )
            return None
        endpoint.wrong_chain = False
        return link

    async def _take_over(self, link: _Link) -> bool:
        """Make ``link`` the serving one: subscribe what is missing, swap, then mark and flush.

        False (with ``link`` closed and its failure recorded) if it died before the swap.
        """
        try:
            await self._subscribe_all(link)
        except RpcTransportError as exc:
            await self._close(link)
            self._fail(link.endpoint, str(exc))
            return False
        # No await from here to the swap: a subscription added now lands on the new link.
        old, self._link = self._link, link
        now = asyncio.get_running_loop().time()
        if old is not None:
            old.active = False
            if now - old.activated_at >= self.stable_after:
                old.endpoint.strikes = 0  # it served well; it just is not the preferred one
        for sub in self._subs:
            sub.server_id = link.server_ids.get(sub)
        self.connects += 1
        link.endpoint.connects += 1
        link.activated_at = now
        link.endpoint.last_error = None
        if self.connects > 1:
            for sub in list(self._subs):
                await sub.queue.put(RESUBSCRIBED)
        while link.held:
            sub, item = link.held.pop(0)
            link.endpoint.notifications += 1
            await sub.queue.put(item)
        link.active = True
        if link.reader is not None and not link.reader.done():
            self.connected.set()
        if old is not None or link.endpoint.rank > 0 or self.connects > 1:
            log.info("%s: websocket serving subscriptions", link.endpoint.safe_url)
        return True

    async def _close(self, link: _Link) -> None:
        self._links.discard(link)
        link.active = False
        if link.reader is not None:
            link.reader.cancel()
            with contextlib.suppress(BaseException):
                await link.reader
        with contextlib.suppress(Exception):
            await link.conn.close()

    # -- which URL, when -----------------------------------------------------------------------

    def _fail(self, endpoint: WsEndpoint, reason: str) -> None:
        endpoint.strikes += 1
        endpoint.failed_at = asyncio.get_running_loop().time()
        endpoint.last_error = reason

    def _retry_at(self, endpoint: WsEndpoint) -> float:
        """When ``endpoint`` may be connected again while no link serves."""
        if endpoint.failed_at is None:
            return 0.0
        if endpoint.wrong_chain:
            return endpoint.failed_at + self.max_hold
        backoff = self.min_backoff * (1 << min(endpoint.strikes - 1, 30))
        return endpoint.failed_at + min(self.max_backoff, backoff)

    def _takeover_at(self, endpoint: WsEndpoint) -> float:
        """When ``endpoint`` may take over from a working, less preferred link."""
        if endpoint.failed_at is None or endpoint.strikes == 0:
            return 0.0
        if endpoint.wrong_chain:
            return endpoint.failed_at + self.max_hold
        hold = self.stable_after * (1 << min(endpoint.strikes - 1, 30))
        return max(self._retry_at(endpoint), endpoint.failed_at + min(self.max_hold, hold))

    def _next_in_turn(self, after: WsEndpoint | None) -> tuple[WsEndpoint | None, float]:
        """The next URL in round-robin order that is out of its backoff, else the wait for one."""
        now = asyncio.get_running_loop().time()
        start = 0 if after is None else after.rank + 1
        count = len(self.endpoints)
        turn = [self.endpoints[(start + i) % count] for i in range(count)]
        for endpoint in turn:
            if self._retry_at(endpoint) <= now:
                return endpoint, 0.0
        return None, min(self._retry_at(e) for e in turn) - now

    def _better(self, serving: WsEndpoint) -> tuple[WsEndpoint | None, float | None]:
        """A more preferred URL that may take over now, else when the first one may."""
        now = asyncio.get_running_loop().time()
        better = [e for e in self.endpoints if e.rank < serving.rank]
        if not better:
            return None, None
        ready = [e for e in better if self._takeover_at(e) <= now]
        if ready:
            return min(ready, key=lambda e: e.rank), 0.0
        return None, min(self._takeover_at(e) for e in better) - now

    def _dropped(self, link: _Link) -> None:
        endpoint = link.endpoint
        lasted = asyncio.get_running_loop().time() - link.activated_at
        if lasted >= self.stable_after:
            endpoint.strikes = 0  # a long, good session: this drop is its first strike
        reason = endpoint.last_error or f"{endpoint.safe_url}: websocket closed"
        self._fail(endpoint, reason)
        if self._link is link:
            self._link = None
            self.connected.clear()
        log.info(
            "%s: websocket down after %.1fs (%s), moving on", endpoint.safe_url, lasted, reason
        )

    # -- the connection loop -------------------------------------------------------------------

    async def _run(self) -> None:
        after: WsEndpoint | None = None
        while True:
            endpoint, wait = self._next_in_turn(after)
            if endpoint is None:
                await asyncio.sleep(wait)  # every URL is in its reconnect backoff
                continue
            after = endpoint
            try:
                link = await self._try_open(endpoint)
                if link is None or not await self._take_over(link):
                    continue
                after = await self._serve()
            except asyncio.CancelledError:
                raise
            except Exception:  # the connection loop must survive anything a node does
                log.exception("%s: websocket loop error", endpoint.safe_url)
                self._fail(endpoint, f"{endpoint.safe_url}: loop error")

    async def _serve(self) -> WsEndpoint:
        """Serve until the link drops (returns its URL), taking over by preferred URLs."""
        opening: asyncio.Task[_Link | None] | None = None
        try:
            while True:
                link = self._link
                assert link is not None and link.reader is not None
                waits: set[asyncio.Future[Any]] = {link.reader}
                timeout: float | None = None
                if opening is None:
                    candidate, due = self._better(link.endpoint)
                    if candidate is not None:
                        opening = asyncio.create_task(
                            self._try_open(candidate), name=f"ws-open {candidate.safe_url}"
                        )
                    elif due is not None:
                        timeout = max(due, 0.0)
                if opening is not None:
                    waits.add(opening)
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if opening is not None and opening.done():
                    new, opening = opening.result(), None
                    if new is not None and await self._take_over(new):
                        if link.reader.done():
                            self._dropped(link)
                        await self._close(link)
                        continue
                if link.reader.done():
                    self._dropped(link)
                    await self._close(link)
                    return link.endpoint
        finally:
            if opening is not None:
                opening.cancel()
                with contextlib.suppress(BaseException):
                    leftover = await opening
                    if leftover is not None:
                        await self._close(leftover)


def _keep_early(early: dict[str, list[Any]], server_id: str, item: Any) -> None:
    kept = early.setdefault(server_id, [])
    if len(kept) < _EARLY_PER_ID:
        kept.append(item)
    while len(early) > _EARLY_IDS:  # ids nobody claims (unsubscribed ones): oldest first out
        del early[next(iter(early))]


def _describe(endpoint: WsEndpoint, exc: BaseException) -> str:
    # RpcError messages are built from redacted URLs; anything else is reduced to its type.
    if isinstance(exc, RpcError):
        return str(exc)
    return f"{endpoint.safe_url}: websocket connect failed: {type(exc).__name__}"
