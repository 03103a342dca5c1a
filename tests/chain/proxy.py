"""A local HTTP JSON-RPC proxy for tests: forwards to a real node, optionally delaying or hanging.

It stands in for a network between us and a node (a slow link, a half-dead node), not for the node:
every answer that reaches the client is the real node's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import httpx


@dataclass
class DelayProxy:
    upstream: str
    delay: float = 0.0  # seconds added before forwarding each request
    hang: bool = False  # accept and read requests, never answer
    status: int | None = None  # answer this HTTP status with an empty JSON body instead
    port: int = 0
    requests: int = 0
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
                if self.hang:
                    await asyncio.Event().wait()
                if self.delay:
                    await asyncio.sleep(self.delay)  # the simulated network latency itself
                if self.status is not None:
                    status, payload = self.status, b"{}"
                else:
                    assert self._client is not None
                    answer = await self._client.post(
                        self.upstream, content=body, headers={"content-type": "application/json"}
                    )
                    status, payload = answer.status_code, answer.content
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
            writer.close()
