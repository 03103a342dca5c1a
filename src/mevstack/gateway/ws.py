"""The WebSocket event stream (port 8094): the docs/contracts.md protocol on top of the bus.

One hub task follows the bus and fans each event out to the connected clients.  Every client
has its own bounded queue and its own writer task, so the hub never waits for a socket:

* ``gas.price`` and ``node.status`` are coalesced: while one is waiting to be sent, a newer one
  for the same chain (and node) replaces it in place, so a slow reader gets the latest value;
* every other event (trades above all) is queued in order and never dropped or merged; a client
  with more than ``client_queue`` messages or more than ``max_buffered_bytes`` bytes waiting (its
  queue plus its socket's write buffer) is disconnected with a reason (close code 4008) and
  counted, instead of slowing the others or silently missing a trade.  The kernel's send buffer
  of each connection is kept small (``SOCKET_SEND_BUFFER``) so that a client that stops reading
  shows up in those bytes within seconds instead of hiding megabytes in socket buffers;
* each event is serialised once by the hub and the same frame is shared by every client; a
  client that is keeping up (nothing queued, its writer idle, little in its socket's buffer)
  gets the frame's bytes, encoded once for everyone (no compression, so they are the same for
  all), written straight to its socket in the hub's pass: the common case costs one socket write
  per client and event and no task switch; the others get it queued, in order, behind what their
  writer still has to send;
* connections are capped in total and per client address: beyond a cap the opening handshake
  is refused (HTTP 503 for the total, 429 for one address) and counted;
* ``since`` replays from the bus's bounded buffer before the live events, with no gap and no
  duplicate (the replay covers exactly the seqs the hub had handled when the client subscribed);
  when the buffer no longer reaches back, the client gets ``{"type": "resync", "reason"}``;
  so does a client whose ``since`` is *ahead* of the bus (the stream restarted, e.g. an in-memory
  ``mevstack up`` whose seq began again at 1), followed by the live events from the current seq;
* a session token ends the stream when it expires, not only when it is presented: an error
  frame ``session expired``, then close code 4401.  Tokens never appear in frames or logs.

Heartbeats are WebSocket ping frames (the ``websockets`` keepalive).  The Origin header, when
present, must be one of ``cors_origins``; clients without an Origin (non-browsers) are accepted.
A bad message gets ``{"type": "error", "error": "…"}`` and the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from mevstack.api.auth import Authenticator, AuthError, Principal
from mevstack.bus import Bus, ReplayGap, SubscriptionClosed, SubscriptionOverflow
from mevstack.errors import MevstackError
from mevstack.events import EVENT_NAMES, Event, EventName
from mevstack.obs import metrics

log = logging.getLogger(__name__)

COALESCED = frozenset({EventName.GAS_PRICE.value, EventName.NODE_STATUS.value})
SLOW_CLIENT_CLOSE_CODE = 4008
SESSION_EXPIRED_CLOSE_CODE = 4401
DEFAULT_CLIENT_QUEUE = 1000
DEFAULT_MAX_BUFFERED_BYTES = 512 * 1024
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 50
MAX_MESSAGE_BYTES = 64 * 1024
# Per connection; Linux doubles it for bookkeeping.  Small enough that a stalled reader cannot
# hide much in the kernel, large enough for this stream's rate over a long fat link.
SOCKET_SEND_BUFFER = 64 * 1024
REFUSED_RETRY_AFTER_S = 5
# Below this many bytes unsent on its socket, a client with nothing queued is written to directly.
DIRECT_SEND_LIMIT = 32 * 1024
CLOSE_GRACE_S = 5.0

CLIENTS = metrics.gauge("mevstack_ws_clients", "Connected WebSocket clients.")
SENT = metrics.counter("mevstack_ws_sent_messages_total", "Event messages sent to WS clients.")
DROPPED = metrics.counter(
    "mevstack_ws_dropped_messages_total",
    "Events not delivered because the client was too slow and was disconnected.",
)
COALESCED_TOTAL = metrics.counter(
    "mevstack_ws_coalesced_messages_total",
    "gas.price / node.status updates replaced by a newer one before being sent.",
)
DISCONNECTS = metrics.counter(
    "mevstack_ws_disconnects_total", "WebSocket disconnections by cause.", ["result"]
)
REFUSED = metrics.counter(
    "mevstack_ws_refused_connections_total",
    "WebSocket handshakes refused because a connection cap was reached.",
    ["result"],
)


class ProtocolError(Exception):
    """A client message that cannot be honoured; its text goes back in an error frame."""


@dataclass(frozen=True, slots=True)
class _Replay:
    since: int
    upto: int


@dataclass(frozen=True, slots=True)
class _Ahead:
    """``since`` beyond what the hub had handled: the hub is behind, or the stream restarted."""

    since: int
    upto: int


@dataclass(frozen=True, slots=True)
class _Out:
    """A serialised frame; ``event`` is set for bus events (counted as sent or dropped)."""

    frame: str
    event: Event | None = None


_Key = tuple[str, str | None, str | None]
_Item = _Out | _Key | _Replay | _Ahead


def _frame(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc).decode()


def event_frame(event: Event) -> _Out:
    return _Out(_frame(event.to_wire()), event)


def _coalesce_key(event: Event) -> _Key:
    node = event.data.get("url") if event.event.value == EventName.NODE_STATUS.value else None
    return (event.event.value, event.chain, node if isinstance(node, str) else None)


def _names(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"{field!r} must be a list of strings")
    return list(dict.fromkeys(value))


def _address(ws: ServerConnection) -> str:
    peer = ws.remote_address
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


def _bearer_token(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Client:
    """One connection: its filters, its bounded queue and the writer that drains it."""

    def __init__(
        self,
        server: WsServer,
        ws: ServerConnection,
        maxsize: int,
        max_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
    ) -> None:
        self.server = server
        self.ws = ws
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.principal: Principal | None = None
        self.filters: dict[str, frozenset[str] | None] = {}
        self.queue: deque[_Item] = deque()
        self.latest: dict[_Key, _Out] = {}
        self.queued_bytes = 0
        self.busy = False  # the writer is sending (or replaying) an item it took from the queue
        self.wake = asyncio.Event()
        self.min_seq = 0
        self.closed = False
        self.expiry: asyncio.TimerHandle | None = None

    # --- hub side (synchronous: never waits for the socket) ---------------------------------

    def wants(self, event: Event) -> bool:
        name = event.event.value
        if name not in self.filters or event.seq <= self.min_seq:
            return False
        chains = self.filters[name]
        return chains is None or event.chain is None or event.chain in chains

    def ready_for(self, event: Event) -> bool:
        """Whether ``event`` may be written to the socket right now, ahead of nothing."""
        if self.closed or self.busy or self.queue or not self.wants(event):
            return False
        transport = self.ws.transport
        # A transport whose peer has gone is closing before the connection notices: writing to
        # it would only make asyncio log each attempt.  Data frames never follow a close frame.
        return (
            transport is not None
            and self.ws.protocol.state is State.OPEN
            and not transport.is_closing()
            and transport.get_write_buffer_size() < DIRECT_SEND_LIMIT
        )

    def offer(self, event: Event, out: _Out | None = None) -> None:
        """Queue ``event`` if wanted; ``out`` is its frame when the hub already made it."""
        if self.closed or not self.wants(event):
            return
        out = event_frame(event) if out is None else out
        if event.event.value in COALESCED:
            key = _coalesce_key(event)
            older = self.latest.get(key)
            if older is not None:
                self.latest[key] = out
                self.queued_bytes += len(out.frame) - len(older.frame)
                COALESCED_TOTAL.inc()
                self.check_buffered()
                return
            self.latest[key] = out
            self.push(key, len(out.frame))
            return
        self.push(out, len(out.frame))

    def reply(self, doc: dict[str, Any]) -> None:
        out = _Out(_frame(doc))
        self.push(out, len(out.frame))

    def push(self, item: _Item, size: int = 0) -> None:
        if self.closed:
            return
        if len(self.queue) >= self.maxsize:
            self.disconnect_slow(f"more than {self.maxsize} messages waiting", unqueued=1)
            return
        if self.buffered_bytes() + size > self.max_bytes:
            self.disconnect_slow(f"more than {self.max_bytes} bytes waiting", unqueued=1)
            return
        self.queue.append(item)
        self.queued_bytes += size
        self.wake.set()

    def buffered_bytes(self) -> int:
        """Bytes waiting for this client: its queue plus what the transport has not sent."""
        transport = self.ws.transport
        return self.queued_bytes + (0 if transport is None else transport.get_write_buffer_size())

    def check_buffered(self) -> None:
        if not self.closed and self.buffered_bytes() > self.max_bytes:
            self.disconnect_slow(f"more than {self.max_bytes} bytes waiting", unqueued=0)

    def disconnect_slow(self, why: str, *, unqueued: int) -> None:
        """Cut a client that cannot keep up; every event it will not get is counted as dropped."""
        queued_events = sum(
            1 for i in self.queue if isinstance(i, tuple) or (isinstance(i, _Out) and i.event)
        )
        DROPPED.inc(queued_events + unqueued)
        DISCONNECTS.labels(result="slow_consumer").inc()
        self.shutdown(SLOW_CLIENT_CLOSE_CODE, f"slow consumer: {why}; reconnect with since")

    def shutdown(self, code: int, reason: str, last: dict[str, Any] | None = None) -> None:
        """Stop delivering; send ``last`` (if any) and close with ``code`` and ``reason``."""
        if self.closed:
            return
        self.closed = True
        self.disarm_expiry()
        self.queue.clear()
        self.latest.clear()
        self.queued_bytes = 0
        self.wake.set()
        self.server.spawn(self._close(code, reason, last))

    async def _close(self, code: int, reason: str, last: dict[str, Any] | None) -> None:
        # The close frame waits behind what the client has not read yet: give a slow but live
        # client a few seconds to read through to the reason, then drop the TCP connection.
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                if last is not None:
                    await self.ws.send(_frame(last))
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()
        except ConnectionClosed:
            pass

    def arm_expiry(self, expires_at: int | None) -> None:
        """End the stream when the session token expires (API tokens have no expiry)."""
        self.disarm_expiry()
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            self.expiry = asyncio.get_running_loop().call_later(delay, self.expire)

    def disarm_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    def expire(self) -> None:
        self.expiry = None
        self.principal = None
        DISCONNECTS.labels(result="session_expired").inc()
        error = {"type": "error", "error": "session expired"}
        self.shutdown(SESSION_EXPIRED_CLOSE_CODE, "session expired", error)

    # --- writer side ------------------------------------------------------------------------

    async def write_loop(self) -> None:
        while True:
            while not self.queue:
                self.busy = False
                if self.closed:
                    return
                self.wake.clear()
                await self.wake.wait()
            self.busy = True
            item = self.queue.popleft()
            if isinstance(item, tuple):
                latest = self.latest.pop(item, None)
                if latest is not None:
                    self.queued_bytes -= len(latest.frame)
                    await self.send(latest)
            elif isinstance(item, _Out):
                self.queued_bytes -= len(item.frame)
                await self.send(item)
            elif isinstance(item, _Replay):
                await self.replay(item.since, item.upto)
            else:
                await self.ahead(item)

    async def send(self, out: _Out) -> None:
        await self.ws.send(out.frame)
        if out.event is not None:
            SENT.inc()

    async def send_event(self, event: Event) -> None:
        await self.send(event_frame(event))

    async def replay(self, since: int, upto: int) -> None:
        """Send the wanted events with ``since < seq <= upto`` from the buffer, or a resync."""
        try:
            missed = await self.server.bus.replay(since)
        except ReplayGap as exc:
            await self.ws.send(_frame({"type": "resync", "reason": str(exc)}))
            return
        for event in missed:
            if event.seq > upto:
                break
            if self.wants(event):
                await self.send_event(event)

    async def ahead(self, request: _Ahead) -> None:
        try:
            current = await self.server.bus.last_seq()
        except MevstackError:
            current = self.server.hub_seq
        if request.since <= current:
            return  # the hub was merely behind the bus: those events come live, above since
        # The stream restarted below since: follow it from here.  Events the hub handled since
        # the subscribe were held back by min_seq; the replay below sends them, and everything
        # after ``caught_up`` is already queued live.
        self.min_seq = 0
        caught_up = self.server.hub_seq
        reason = (
            f"since seq {request.since} is ahead of the stream (current seq {current}): "
            "the event stream restarted; reload the state, live events follow"
        )
        await self.ws.send(_frame({"type": "resync", "reason": reason}))
        if caught_up > request.upto:
            await self.replay(request.upto, min(caught_up, request.since))

    # --- reader side ------------------------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        try:
            await self.dispatch(raw)
        except ProtocolError as exc:
            self.reply({"type": "error", "error": str(exc)})

    async def dispatch(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            raise ProtocolError("binary frames are not supported: send JSON text")
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProtocolError("message is not valid JSON") from None
        if not isinstance(message, dict):
            raise ProtocolError("message must be a JSON object with a 'type'")
        kind = message.get("type")
        if kind == "ping":
            self.reply({"type": "pong"})
        elif kind == "auth":
            await self.authenticate(message.get("token"))
        elif kind == "subscribe":
            self.subscribe(message)
        elif kind == "unsubscribe":
            self.unsubscribe(message)
        else:
            shown = kind if isinstance(kind, str) and len(kind) <= 32 else "?"
            raise ProtocolError(
                f"unknown message type {shown!r} (use auth, subscribe, unsubscribe or ping)"
            )

    async def authenticate(self, token: Any) -> None:
        if not isinstance(token, str) or not token:
            raise ProtocolError("auth needs a 'token' string")
        try:
            principal = await self.server.authenticator.authenticate(token)
        except AuthError as exc:
            raise ProtocolError(f"authentication failed: {exc}") from None
        if principal is None or not principal.allows("read"):
            raise ProtocolError("authentication failed: the token lacks the 'read' scope")
        self.principal = principal
        self.arm_expiry(principal.expires_at)
        self.reply({"type": "authenticated", "name": principal.name})

    def subscribe(self, message: dict[str, Any]) -> None:
        expires = None if self.principal is None else self.principal.expires_at
        if expires is not None and expires <= time.time():
            self.principal = None
            raise ProtocolError("session token expired: log in again and send a new auth message")
        if self.principal is None and not self.server.authenticator.public_read:
            raise ProtocolError('authentication required: send {"type": "auth", "token": …}')
        events = _names(message.get("events"), "events")
        if not events:
            raise ProtocolError("'events' must name at least one event")
        unknown = sorted(set(events) - EVENT_NAMES)
        if unknown:
            raise ProtocolError(f"unknown event {unknown[0]!r}")
        chains_raw = message.get("chains")
        chains = None if chains_raw is None else frozenset(_names(chains_raw, "chains"))
        since = message.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
            raise ProtocolError("'since' must be a non-negative integer seq")
        if since is not None and since < 0:
            raise ProtocolError("'since' must be a non-negative integer seq")
        for name in events:
            self.filters[name] = chains
        self.reply({"type": "subscribed", "events": sorted(self.filters)})
        if since is not None:
            # Everything the hub handled up to now comes from the replay buffer; what it handles
            # next arrives live (queued after this marker), so nothing is missed or repeated.
            upto = self.server.hub_seq
            if since < upto:
                self.push(_Replay(since, upto))
            elif since > upto:
                self.min_seq = since
                self.push(_Ahead(since, upto))

    def unsubscribe(self, message: dict[str, Any]) -> None:
        events = _names(message.get("events"), "events")
        for name in events:
            self.filters.pop(name, None)
        self.reply({"type": "unsubscribed", "events": events})


class WsServer:
    """Owns the hub task and the connections; ``start`` binds, ``aclose`` stops everything."""

    def __init__(
        self,
        bus: Bus,
        authenticator: Authenticator,
        *,
        cors_origins: Iterable[str] = (),
        client_queue: int = DEFAULT_CLIENT_QUEUE,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> None:
        self.bus = bus
        self.authenticator = authenticator
        self.origins: list[Origin | None] = [Origin(o) for o in cors_origins] + [None]
        self.client_queue = client_queue
        self.max_buffered_bytes = max_buffered_bytes
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        # Admitted connections (handshake accepted, TCP not yet closed), in total and by address.
        self.admitted: Counter[str] = Counter()
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.clients: set[Client] = set()
        self.hub_seq = 0
        self._server: Server | None = None
        self._hub: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = asyncio.Event()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("WebSocket server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._hub = asyncio.create_task(self._pump(), name="ws-hub")
        await self._ready.wait()
        self._server = await serve(
            self._connection,
            host,
            port,
            origins=self.origins,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            max_size=MAX_MESSAGE_BYTES,
            # Compression would cost one zlib pass per client per event, where the fan-out
            # otherwise sends the very same frame to everyone.
            compression=None,
            close_timeout=2.0,
            process_response=self._admit,
        )

    def _admit(self, ws: ServerConnection, request: Request, response: Response) -> Response | None:
        """Hold the accepted handshakes to the connection caps; refuse the rest with a reason."""
        del request
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            return None  # refused already (bad Origin, not a WebSocket request)
        address = _address(ws)
        total = self.admitted.total()
        if total >= self.max_connections:
            return self._refuse(
                ws,
                "total",
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"too many WebSocket connections ({self.max_connections}); retry later",
            )
        if self.admitted[address] >= self.max_connections_per_address:
            return self._refuse(
                ws,
                "per_address",
                http.HTTPStatus.TOO_MANY_REQUESTS,
                f"too many WebSocket connections from {address} "
                f"({self.max_connections_per_address}); close some or retry later",
            )
        self.admitted[address] += 1
        self.spawn(self._release(ws, address))
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        return None

    @staticmethod
    def _refuse(ws: ServerConnection, cap: str, status: http.HTTPStatus, text: str) -> Response:
        REFUSED.labels(result=cap).inc()
        refusal = ws.respond(status, text + "\n")
        refusal.headers["Retry-After"] = str(REFUSED_RETRY_AFTER_S)
        return refusal

    async def _release(self, ws: ServerConnection, address: str) -> None:
        try:
            await ws.wait_closed()
        finally:
            self.admitted[address] -= 1
            if self.admitted[address] <= 0:
                del self.admitted[address]

    async def _pump(self) -> None:
        sub = await self.bus.subscribe("ws-hub", maxsize=100_000)
        self.hub_seq = sub.start_seq
        self._ready.set()
        while True:
            try:
                event = await sub.get()
            except SubscriptionClosed:
                return
            except SubscriptionOverflow as exc:
                sub = await self._recover(exc.last_seq)
                continue
            self._fan_out(event)

    def _fan_out(self, event: Event) -> None:
        self.hub_seq = event.seq
        if not self.clients:
            return
        out = event_frame(event)  # serialised once, shared by every client
        wire: bytes | None = None
        direct = 0
        for client in list(self.clients):
            if client.ready_for(event):
                if wire is None:
                    # The same bytes for every client: a server's frames are never masked and
                    # no extension (compression) is ever negotiated here.
                    wire = Frame(Opcode.TEXT, out.frame.encode()).serialize(
                        mask=False, extensions=[]
                    )
                client.ws.transport.write(wire)
                direct += 1
            else:
                client.offer(event, out)
        if direct:
            SENT.inc(direct)

    async def _recover(self, last_seq: int) -> Any:
        """The hub itself fell behind the bus: catch up from the replay buffer, or resync all."""
        log.warning("websocket hub overflowed; catching up from seq %d", last_seq)
        sub = await self.bus.subscribe("ws-hub", maxsize=100_000)
        try:
            missed = await self.bus.replay(last_seq)
        except ReplayGap as exc:
            for client in list(self.clients):
                client.reply({"type": "resync", "reason": str(exc)})
            self.hub_seq = sub.start_seq
            return sub
        for event in missed:
            if event.seq <= sub.start_seq:
                self._fan_out(event)
        return sub

    async def _connection(self, ws: ServerConnection) -> None:
        client = Client(self, ws, self.client_queue, self.max_buffered_bytes)
        self.clients.add(client)
        CLIENTS.set(len(self.clients))
        writer = asyncio.create_task(client.write_loop())
        header = ws.request.headers.get("Authorization") if ws.request is not None else None
        if header is not None:
            # Non-browser clients may authenticate in the handshake instead of an auth message.
            auth = {"type": "auth", "token": _bearer_token(header)}
            await client.handle(orjson.dumps(auth).decode())
        try:
            async for raw in ws:
                await client.handle(raw)
                if writer.done():
                    break
            if not client.closed:
                DISCONNECTS.labels(result="client_closed").inc()
        except ConnectionClosed:
            if not client.closed:
                DISCONNECTS.labels(result="connection_lost").inc()
        finally:
            client.closed = True
            client.disarm_expiry()
            client.wake.set()
            self.clients.discard(client)
            CLIENTS.set(len(self.clients))
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._hub is not None:
            self._hub.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hub
        for task in list(self._tasks):
            task.cancel()
        CLIENTS.set(0)
