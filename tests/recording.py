"""An HTTP JSON-RPC proxy that records which methods pass through it, for tests.

It stands between the engine and a real node: every answer is the node's own; the proxy only
notes each method (batches included), so a test can prove what was, or was never, asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import httpx
import orjson


@dataclass
class RecordingProxy:
    upstream: str
    methods: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _client: httpx.AsyncClient | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RecordingProxy:
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

    def _record(self, body: bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            payload = orjson.loads(body)
            for call in payload if isinstance(payload, list) else [payload]:
                if isinstance(call, dict):
                    self.methods[str(call.get("method"))] += 1

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
                self._record(body)
                assert self._client is not None
                answer = await self._client.post(
                    self.upstream, content=body, headers={"content-type": "application/json"}
                )
                writer.write(
                    f"HTTP/1.1 {answer.status_code} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(answer.content)}\r\n\r\n".encode()
                    + answer.content
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
