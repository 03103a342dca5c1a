"""A login is an admin-visible action: one INFO line naming who, never the token."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from mevstack.api.auth import Principal, SessionSigner
from mevstack.obs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    yield out
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_a_login_is_logged_with_its_name_and_scopes_and_no_token(stream: io.StringIO) -> None:
    signer = SessionSigner(b"s" * 32, clock=lambda: 1_000.0)
    who = Principal("ops", frozenset({"read", "admin"}), "api_token")
    session, expires = signer.issue(who)
    (doc,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert doc["level"] == "info" and doc["logger"] == "mevstack.audit"
    assert (doc["actor"], doc["action"]) == ("ops", "auth.login")
    assert doc["details"] == {"scopes": ["admin", "read"], "expires": expires}
    assert session not in stream.getvalue() and session.split(".")[-1] not in stream.getvalue()
