"""Local proxies for tests: HTTP JSON-RPC that can delay, hang or inject faults, raw TCP that can
go down or flap.

They stand in for a network between us and a node (a slow link, a half-dead node, a cut path),
not for the node: every answer that reaches the client is the real node's answer.  The HTTP proxy
also notes each JSON-RPC method that passes (batches included) and each one it forwarded to the
node, so a test can prove what was, or was never, asked or delivered.

Faults (``DelayProxy.inject``), each for the next call(s) of one JSON-RPC method:

* ``lose_answer``: forward the request, let the node act on it, then cut the connection
  instead of answering (the node got it, the client cannot know);
* ``swallow``: cut the connection without forwarding (the node never got it);
* ``late``: hold the request ``seconds`` before forwarding it (beyond the client's timeout, the
  node acts on it after the client gave up).

``down`` cuts every connection as soon as a request arrives: a dead node, as the client sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

import httpx
import orjson

from tests.ports import free_port_block

FaultKind = Literal["lose_answer", "swallow", "late"]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    seconds: float = 0.0  # how long ``late`` holds the request


@dataclass
class DelayProxy:
    upstream: str
    delay: float = 0.0  # seconds added before forwarding each request
    hang: bool = False  # accept and read requests, never answer
    status: int | None = None  # answer this HTTP status with an empty JSON body instead
    port: int = 0
    requests: int = 0
    methods: Counter[str] = field(default_factory=Counter)  # JSON-RPC methods seen, per call
    forwarded: Counter[str] = field(default_factory=Counter)  # of those, delivered to the node
    down: bool = False  # cut every connection at its first request (a dead node)
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    injected: Counter[str] = field(default_factory=Counter)  # faults applied, by kind
    _server: asyncio.Server | None = field(default=None, repr=False)
    _client: httpx.AsyncClient | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> DelayProxy:
        self._client = httpx.AsyncClient(timeout=30.0)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._client is not None:
            await self._client.aclose()

    def inject(self, method: str, kind: FaultKind, *, seconds: float = 0.0, times: int = 1) -> None:
        """Apply ``kind`` to the next ``times`` requests that call ``method``."""
        queue = self.faults.setdefault(method, deque())
        queue.extend(Fault(kind, seconds) for _ in range(times))

    def _methods(self, body: bytes) -> list[str]:
        with contextlib.suppress(orjson.JSONDecodeError):
            payload = orjson.loads(body)
            calls = payload if isinstance(payload, list) else [payload]
            return [str(call.get("method")) for call in calls if isinstance(call, dict)]
        return []

    def _fault(self, methods: list[str]) -> Fault | None:
        for method in methods:
            queue = self.faults.get(method)
            if queue:
                fault = queue.popleft()
                self.injected[fault.kind] += 1
                return fault
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests += 1
                methods = self._methods(body)
                self.methods.update(methods)
                if self.down:
                    return  # the finally cuts the connection
                fault = self._fault(methods)
                if self.hang:
                    await asyncio.Event().wait()
                if fault is not None and fault.kind == "swallow":
                    return
                if fault is not None and fault.kind == "late":
                    # the node gets it although the client gave up waiting long ago
                    await asyncio.sleep(fault.seconds)  # the simulated late delivery itself
                    await self._forward(body, methods)
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)  # the simulated network latency itself
                if self.status is not None:
                    status, payload = self.status, b"{}"
                else:
                    status, payload = await self._forward(body, methods)
                if fault is not None and fault.kind == "lose_answer":
                    return  # the node acted on it; the answer is lost with the connection
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()  # a cut: no answer for a request still open

    async def _forward(self, body: bytes, methods: list[str]) -> tuple[int, bytes]:
        assert self._client is not None
        answer = await self._client.post(
            self.upstream, content=body, headers={"content-type": "application/json"}
        )
        self.forwarded.update(methods)
        return answer.status_code, answer.content


@dataclass
class TcpProxy:
    """Forwards raw TCP to a local port: the network path to a node's WebSocket, cut at will.

    Created down.  ``up()`` listens (always on the same port), ``down()`` stops listening and cuts
    every open connection, so connects are refused while the node itself keeps running (its HTTP
    side stays reachable).  With ``cut_after`` the path flaps: each connection is cut that many
    seconds after it was accepted.
    """

    upstream_port: int
    cut_after: float | None = None
    port: int = field(default_factory=lambda: free_port_block(1))
    accepted: list[float] = field(default_factory=list)  # event-loop time of each accept
    _server: asyncio.Server | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._tasks)

    async def up(self) -> TcpProxy:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted.append(asyncio.get_running_loop().time())
        upstream: asyncio.StreamWriter | None = None
        pumps: list[asyncio.Task[None]] = []
        try:
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            pumps = [
                asyncio.create_task(_pump(reader, upstream)),
                asyncio.create_task(_pump(up_reader, writer)),
            ]
            with contextlib.suppress(TimeoutError):  # the flap: cut on the deadline
                async with asyncio.timeout(self.cut_after):
                    await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            writer.transport.abort()  # a cut, not a goodbye: the client sees no close frame
            if upstream is not None:
                upstream.transport.abort()
            self._tasks.discard(task)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
