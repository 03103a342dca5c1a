"""Hostile peers for tests: answers no real node or relay sends, from minimal servers that speak
the real protocol (HTTP/1.1 JSON-RPC) around them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
async def deep_http_node() -> AsyncIterator[str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(DEEP), DEEP)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()
