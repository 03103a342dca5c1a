"""Auth: API tokens, scopes, session tokens, the secret on disk, every mutating endpoint."""

from __future__ import annotations

import os
import stat
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from mevstack.api.auth import (
    Authenticator,
    AuthError,
    Principal,
    SessionSigner,
    create_token,
    hash_token,
    load_or_create_secret,
)
from mevstack.api.store_view import StoreTokens
from mevstack.errors import ConfigError, MevstackError
from mevstack.store import Store
from tests.api.conftest import PLAIN, auth

MUTATING = [
    ("POST", "/api/mev/opportunities/opp-0001/execute", None, "trade"),
    ("PATCH", "/api/trading/state", {"kill_switch": True}, "admin"),
    ("POST", "/api/agents/arbitrage/start", None, "admin"),
    ("POST", "/api/agents/arbitrage/stop", None, "admin"),
    (
        "POST",
        "/api/exploits",
        {"chain": "ethereum", "severity": "high", "pools": ["0x" + "0" * 39 + "1"]},
        "admin",
    ),
]


def test_secret_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "state")
    mode = stat.S_IMODE((tmp_path / "state" / "session.key").stat().st_mode)
    assert mode == 0o600
    assert load_or_create_secret(tmp_path / "state") == first
    assert len(first) == 32
    os.chmod(tmp_path / "state" / "session.key", 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_or_create_secret(tmp_path / "state")


def test_session_token_roundtrip_tamper_and_expiry(tmp_path: Path) -> None:
    now = [1_000_000.0]
    signer = SessionSigner(load_or_create_secret(tmp_path), ttl_s=60, clock=lambda: now[0])
    who = Principal("ops", frozenset({"read", "trade"}), "api_token")
    token, expires = signer.issue(who)
    assert expires == 1_000_060
    back = signer.verify(token)
    assert (back.name, back.scopes, back.kind) == ("ops", who.scopes, "session")
    prefix, body, mac = token.split(".")
    forged_body = body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
    for bad in (
        f"{prefix}.{forged_body}.{mac}",
        f"{prefix}.{body}.{mac[:-1]}",
        "mvs2." + body + "." + mac,
        "x",
    ):
        with pytest.raises(AuthError):
            signer.verify(bad)
    other = SessionSigner(os.urandom(32), clock=lambda: now[0])
    with pytest.raises(AuthError, match="invalid"):
        other.verify(token)
    now[0] += 60
    with pytest.raises(AuthError, match="expired"):
        signer.verify(token)


def _all_bytes(directory: Path) -> bytes:
    return b"".join(f.read_bytes() for f in directory.iterdir())


async def test_token_create_stores_only_the_digest(tmp_path: Path) -> None:
    db = Store.open(f"sqlite:///{tmp_path}/tokens.db")
    store = StoreTokens(db, cache_s=0)
    token, record = await create_token(store, "dash", "read,trade")
    assert record.scopes == ("read", "trade")
    raw = _all_bytes(tmp_path)  # the database and its WAL
    assert token.encode() not in raw and hash_token(token).encode() in raw
    auth = Authenticator(store=store, signer=SessionSigner(os.urandom(32)))
    who = await auth.authenticate(token)
    assert who is not None and who.name == "dash" and who.scopes == {"read", "trade"}
    with pytest.raises(MevstackError, match="already exists"):
        await create_token(store, "dash", "read")
    with pytest.raises(ConfigError, match="unknown scope 'root'"):
        await create_token(store, "other", "read,root")
    with pytest.raises(ConfigError, match="--name"):
        await create_token(store, "Bad Name!", "read")


async def test_reads_need_a_token_unless_public(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/mev/opportunities")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.get("/api/mev/opportunities", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "nope" not in wrong.text
    basic = await client.get("/api/mev/opportunities", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    ok = await client.get("/api/mev/opportunities", headers=auth("reader"))
    assert ok.status_code == 200


async def test_login_issues_a_session_usable_as_bearer(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/auth/login", json={"token": PLAIN["trader"]})
    assert answer.status_code == 200, answer.text
    session = answer.json()["data"]
    assert session["token_type"] == "Bearer" and session["scopes"] == ["read", "trade"]
    assert session["expires_at"].endswith("Z")
    headers = {"Authorization": f"Bearer {session['session_token']}"}
    assert (await client.get("/api/mev/opportunities", headers=headers)).status_code == 200
    # a session cannot mint another session, and a wrong token gets nothing
    again = await client.post("/api/auth/login", json={"token": session["session_token"]})
    assert again.status_code == 401
    wrong = await client.post("/api/auth/login", json={"token": "mvt_wrong"})
    assert wrong.status_code == 401 and "mvt_wrong" not in wrong.text
    header_login = await client.post("/api/auth/login", headers=auth("reader"))
    assert header_login.status_code == 200


@pytest.mark.parametrize(("method", "path", "body", "scope"), MUTATING)
async def test_mutating_endpoint_refuses_bad_tokens(
    client: httpx.AsyncClient,
    tmp_path: Path,
    api_state: Path,
    method: str,
    path: str,
    body: object,
    scope: str,
) -> None:
    def call(headers: dict[str, str]) -> Coroutine[Any, Any, httpx.Response]:
        return client.request(method, path, json=body, headers=headers)

    missing = await call({})
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "unauthorized")
    wrong = await call({"Authorization": "Bearer mvt_not-a-token"})
    assert wrong.status_code == 401 and "mvt_not-a-token" not in wrong.text
    # expired session signed with the real secret
    signer = SessionSigner(load_or_create_secret(api_state), clock=lambda: 1.0)
    expired, _ = signer.issue(Principal("admin", frozenset({"admin"}), "api_token"), ttl_s=5)
    late = await call({"Authorization": f"Bearer {expired}"})
    assert late.status_code == 401 and "expired" in late.json()["error"]["message"]
    weak = "reader" if scope == "trade" else "trader"
    forbidden = await call(auth(weak))
    assert (forbidden.status_code, forbidden.json()["error"]["code"]) == (403, "forbidden")
    # with the scope, the request gets past auth: the feature is not built, so 503, never 500
    allowed = await call(auth("admin"))
    assert allowed.status_code == 503
    assert allowed.json()["error"]["code"] == "not_available"


async def test_tokens_never_reach_the_logs(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    secret = "mvt_this-must-not-be-logged"
    await client.get("/api/nodes", headers={"Authorization": f"Bearer {secret}"})
    await client.post("/api/auth/login", json={"token": secret})
    await client.post("/api/auth/login", json={"token": PLAIN["reader"]})
    assert any(r.getMessage() == "request" for r in caplog.records)
    text = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    assert secret not in text and PLAIN["reader"] not in text
