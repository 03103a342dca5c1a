"""Request bodies: closed, typed and bounded in the document, and the engine agrees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import auth
from tests.api.test_schemathesis import CHAINS, build_conformance_app

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = build_conformance_app(tmp_path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        yield client


async def test_the_document_is_closed_and_names_the_chains(engine: httpx.AsyncClient) -> None:
    doc = (await engine.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    patch, alert, limits = (
        schemas["PatchTradingState"],
        schemas["ExploitAlertIn"],
        schemas["ChainLimitsPatch"],
    )
    assert patch["additionalProperties"] is False and limits["additionalProperties"] is False
    assert alert["additionalProperties"] is False and alert["required"] == ["chain", "severity"]
    by_chain = next(a for a in patch["properties"]["limits"]["anyOf"] if a.get("type") == "object")
    assert by_chain["propertyNames"] == {"type": "string", "enum": CHAINS}
    assert alert["properties"]["chain"] == {"type": "string", "enum": CHAINS}
    wei = limits["properties"]["max_trade_wei"]["anyOf"][0]
    assert wei == {"type": "string", "pattern": "^[0-9]{1,77}$"}


async def test_patch_takes_wei_as_strings_and_null_as_unchanged(
    engine: httpx.AsyncClient,
) -> None:
    admin = auth("admin")
    number = await engine.patch(
        "/api/trading/state", json={"limits": {"base": {"max_trade_wei": 5}}}, headers=admin
    )
    assert number.status_code == 400
    assert "decimal string of wei" in number.json()["error"]["message"]
    big = str(2**255)
    changed = await engine.patch(
        "/api/trading/state",
        json={"limits": {"base": {"max_trade_wei": big, "max_in_flight": 3.0}}, "mode": None},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    state = changed.json()["data"]
    assert state["chains"]["base"]["limits"]["max_trade_wei"] == big  # exact
    assert state["chains"]["base"]["limits"]["max_in_flight"] == 3
    assert state["mode"] == "observe"  # null left it alone
    for bad in (
        {"bogus": 1},
        {"limits": {"solana": {}}},
        {"limits": {"base": {"max_in_flight": "3"}}},
        {"kill_switch": 1},
        {"mode": "yolo"},
    ):
        refused = await engine.patch("/api/trading/state", json=bad, headers=admin)
        assert refused.status_code == 400, (bad, refused.text)


async def test_alert_addresses_lowercase_or_checksummed(engine: httpx.AsyncClient) -> None:
    admin = auth("admin")
    base = {"chain": "ethereum", "severity": "high"}
    for pools in (WETH, WETH.lower(), [WETH.upper().replace("0X", "0x")]):
        ok = await engine.post("/api/exploits", json={**base, "pools": pools}, headers=admin)
        assert ok.status_code in (200, 409), ok.text  # 409: the same alert again
    typo = WETH[:-1] + "C"
    refused = await engine.post("/api/exploits", json={**base, "tokens": [typo]}, headers=admin)
    assert refused.status_code == 400 and "EIP-55" in refused.json()["error"]["message"]
    nothing = await engine.post("/api/exploits", json={**base, "pools": []}, headers=admin)
    assert nothing.status_code == 400
