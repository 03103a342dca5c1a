"""Engine API fixtures: the real app in-process (ASGI), real auth with tokens and a real secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mevstack.api.app import create_app
from mevstack.api.auth import (
    Authenticator,
    SessionSigner,
    TokenRecord,
    hash_token,
    load_or_create_secret,
)
from mevstack.api.store_view import StoreView
from mevstack.store import Store, Trade

TOKENS = {"reader": ("read",), "trader": ("read", "trade"), "admin": ("read", "trade", "admin")}
PLAIN = {name: f"mvt_test-{name}-token" for name in TOKENS}


def make_view(db_dir: Path, source: str = "engine-test") -> StoreView:
    """A real SQLite store with 30 opportunities and 25 trades, served through StoreView."""
    store = Store.open(f"sqlite:///{db_dir}/api-{source}.db")
    for i in range(1, 31):
        store.upsert_opportunity(opportunity(i, kind="backrun" if i % 3 == 0 else "arbitrage"))
    for i in range(1, 26):
        store.insert_trade(trade(i))
    return StoreView(store, source)


def opportunity(i: int, chain: str = "ethereum", kind: str = "arbitrage") -> dict[str, Any]:
    weth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    usdc = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
    pool = "0xB4e16d0168e52d35CaCD2c6185b44281Ec28C9Dc"
    return {
        "id": f"opp-{i:04d}",
        "chain": chain,
        "chain_id": 1,
        "kind": kind,
        "block_number": 100 + i,
        "token": weth,
        "amount_in": str(10**18),
        "amount_out": str(10**18 + i),
        "gross_profit": str(i),
        "gas_estimate": 150000,
        "gas_price_wei": "1000000000",
        "gas_cost_wei": "150000000000000",
        "net_profit_wei": "0",
        "path": [
            {
                "dex": "uniswap-v2",
                "pool": pool,
                "token_in": weth,
                "token_out": usdc,
                "amount_in": str(10**18),
                "amount_out": "3000000000",
                "dex_kind": "uniswap_v2",
            },
            {
                "dex": "sushi-v2",
                "pool": pool,
                "token_in": usdc,
                "token_out": weth,
                "amount_in": "3000000000",
                "amount_out": str(10**18 + i),
                "dex_kind": "uniswap_v2",
            },
        ],
        "trigger_tx": None,
        "status": "detected",
        "detected_at": f"2026-01-01T00:00:{i % 60:02d}.000Z",
        "expires_at_block": 102 + i,
    }


def trade(i: int, chain: str = "ethereum") -> Trade:
    return Trade(
        id=f"trade-{i:04d}",
        chain=chain,
        route="public",
        token="0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        status="included",
        opportunity_id=f"opp-{i:04d}",
        expected_profit=i,
        realized_profit=i,
        gas_used=120_000,
        gas_cost_wei=1,
        net_pnl_wei=0,
        block_number=1000 + i,
        confirmations=2,
    )


def make_authenticator(state_dir: Path, *, public_read: bool) -> Authenticator:
    records = [TokenRecord(n, s, hash_token(PLAIN[n])) for n, s in TOKENS.items()]
    signer = SessionSigner(load_or_create_secret(state_dir), ttl_s=60)
    return Authenticator(config_tokens=records, signer=signer, public_read=public_read)


@pytest.fixture(scope="module")
def api_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-state")


def make_app(
    state_dir: Path,
    *,
    public_read: bool = False,
    view: Any = None,
    chains: list[str] | None = None,
) -> FastAPI:
    if view is None:
        view = make_view(state_dir)
    return create_app(
        view=view,
        authenticator=make_authenticator(state_dir, public_read=public_read),
        chains=chains,
    )


@pytest.fixture(scope="module")
def app(api_state: Path) -> FastAPI:
    return make_app(api_state)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as c:
        yield c


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {PLAIN[name]}"}
