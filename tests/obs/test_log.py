"""Structured JSON logging: one object per line, extra fields kept, secrets never written."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from mevstack.errors import ConfigError
from mevstack.obs import configure_logging, redact_text, request_context

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
TX_HASH = "0x" + "9f" * 32


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """configure_logging changes the root logger; leave it as the rest of the suite had it."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)


@pytest.fixture
def capture() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_extra_fields(capture: io.StringIO) -> None:
    log = logging.getLogger("mevstack.test")
    log.info("block %d on %s", 42, "ethereum", extra={"chain": "ethereum", "lag": 1.5})
    log.warning("profit", extra={"wei": 2**256 - 1, "path": ["a", "b"]})
    first, second = lines(capture)
    assert first["msg"] == "block 42 on ethereum"
    assert (first["level"], first["logger"]) == ("info", "mevstack.test")
    assert first["chain"] == "ethereum" and first["lag"] == 1.5
    assert first["ts"].endswith("Z") and len(first["ts"]) == 24
    assert second["wei"] == str(2**256 - 1)  # too big for a JSON number reader: kept exact
    assert second["path"] == ["a", "b"] and second["level"] == "warning"


def test_exceptions_are_logged_in_one_line(capture: io.StringIO) -> None:
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (record,) = lines(capture)
    assert "ValueError" in record["exc"] and KEY not in record["exc"]
    assert len(capture.getvalue().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"loaded key {KEY}", KEY),
        (f"loaded key 0x{KEY.upper()}", KEY.upper()),
        ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9-abc_def", "eyJhbGciOi"),
        ("header bearer mst_live_0123456789", "mst_live_0123456789"),
        ("rpc https://alice:s3cret@eth.example.com/v2 down", "s3cret"),
        ("redis://:hunter2@10.0.0.1:6379/0", "hunter2"),
        ("postgresql://postgres:pw123@127.0.0.1/db", "pw123"),
        ("minted mvt_Zk3v9Qw_x-Lm0pR7tY2uI8oP", "Zk3v9Qw_x-Lm0pR7tY2uI8oP"),
        ("session mvs1.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJl", "eyJzdWIiOiJvcHMifQ"),
    ],
)
def test_redaction_in_messages(capture: io.StringIO, text: str, secret: str) -> None:
    logging.getLogger("x").error(text)
    (record,) = lines(capture)
    assert secret not in record["msg"] and "***" in record["msg"]
    assert secret not in capture.getvalue()


def test_redaction_keeps_what_is_not_secret() -> None:
    assert redact_text("https://eth.example.com/v2/") == "https://eth.example.com/v2/"
    assert redact_text("user@example.com wrote") == "user@example.com wrote"
    assert redact_text("0x" + "ab" * 20) == "0x" + "ab" * 20  # an address is not a key
    assert redact_text("https://u:p@h/x") == "https://***@h/x"


def test_redaction_in_extra_fields(capture: io.StringIO) -> None:
    logging.getLogger("x").info(
        "trade sent",
        extra={
            "tx_hash": TX_HASH,
            "tx_hashes": [TX_HASH],
            "password": "hunter2",
            "api_token": "abc",
            "token": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
            "note": f"signed with {KEY}",
            "endpoint": "wss://bob:pw@node.example/ws",
            "nested": {"private_key": KEY, "ok": 1},
        },
    )
    (record,) = lines(capture)
    assert record["tx_hash"] == TX_HASH and record["tx_hashes"] == [TX_HASH]
    assert record["password"] == "***" and record["api_token"] == "***"
    assert record["token"] == "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"  # an ERC-20
    assert record["note"] == "signed with ***"
    assert record["endpoint"] == "wss://***@node.example/ws"
    assert record["nested"] == {"private_key": "***", "ok": 1}
    assert KEY not in capture.getvalue() and "hunter2" not in capture.getvalue()


def test_text_mode_redacts_too_and_reconfiguring_replaces_the_handler() -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=io.StringIO())
    handler = configure_logging("info", json=False, stream=stream)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_mevstack_handler", False)]
    assert ours == [handler]
    logging.getLogger("x").info("key %s", KEY)
    logging.getLogger("x").debug("hidden")
    out = stream.getvalue()
    assert "key ***" in out and KEY not in out and "hidden" not in out


def test_bad_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown log level 'loud'"):
        configure_logging("loud")


async def test_request_id_follows_the_task(capture: io.StringIO) -> None:
    log = logging.getLogger("mevstack.api")
    both_inside = asyncio.Barrier(2)  # the two requests are in flight at the same time

    async def handle(rid: str) -> None:
        with request_context(rid):
            await both_inside.wait()
            log.info("handled")

    await asyncio.gather(handle("req-1"), handle("req-2"))
    log.info("outside")
    records = [r for r in lines(capture) if r["logger"] == "mevstack.api"]
    assert sorted(r.get("request_id", "") for r in records[:2]) == ["req-1", "req-2"]
    assert "request_id" not in records[2]


def test_uvicorns_colour_codes_never_reach_the_json_lines(capture: io.StringIO) -> None:
    # uvicorn logs with extra={"color_message": ...}: the same text with ANSI escapes
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]",
        42,
        extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"},
    )
    raw = capture.getvalue()
    assert "\x1b" not in raw and "\\u001b" not in raw
    (doc,) = lines(capture)
    assert doc["msg"] == "Started server process [42]"
    assert "color_message" not in doc


async def test_a_real_uvicorn_server_logs_without_colour_codes(capture: io.StringIO) -> None:
    import uvicorn

    from mevstack.devnet.anvil import free_port

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await send({"type": "lifespan.shutdown.complete"})

    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no startup event
                await asyncio.sleep(0.01)
    finally:
        server.should_exit = True
        await task
    docs = lines(capture)
    assert any("Uvicorn running on" in d["msg"] for d in docs), docs
    assert "\\u001b" not in capture.getvalue() and "\x1b" not in capture.getvalue()
    assert all("color_message" not in d for d in docs)
