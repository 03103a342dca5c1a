"""Property-based conformance: schemathesis drives every operation of the OpenAPI document.

Runs in-process over ASGI, with every built-in check (status codes, content types, response
schemas and headers, valid data accepted, invalid data refused, ignored auth, unsupported methods
and their ``Allow``), a bounded number of examples per operation, and twice: with an admin token
and with a read-only token.  Any 5xx, undocumented status, or answer that breaks its documented
schema fails the test.

The engine behind it has real trading state and a real exploit service, so PATCH and POST bodies
are judged by the same code as in production.  Two things are left out, each because the
document cannot say it:

* ``positive_data_acceptance`` for a ``cursor``: cursors are opaque, and only one the API handed
  out is valid (any other is a documented 400);
* 503 ``not_available`` from features this test engine does not run (nodes, gas, agents).
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mevstack.api.store_view import StoreView
from mevstack.api.view import BadRequest, JsonObject
from mevstack.bus.memory import MemoryBus
from mevstack.config import parse_settings
from mevstack.execution.risk import RiskConfigError
from mevstack.execution.trading_state import TradingState
from mevstack.exploits.service import ExploitService
from mevstack.store import Store
from tests.api.conftest import PLAIN, make_app, opportunity, trade

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
CHAINS = ["ethereum", "base"]


class ConformanceView(StoreView):
    """The store view plus the engine's real trading state and exploit service."""

    def __init__(self, store: Store, state: TradingState, service: ExploitService) -> None:
        super().__init__(store, "engine-schemathesis")
        self.state = state
        self.service = service

    async def trading_state(self) -> JsonObject:
        return self.state.snapshot()

    async def patch_trading_state(self, changes: JsonObject) -> JsonObject:
        # what the engine runtime does with a PATCH
        try:
            await asyncio.to_thread(self.state.apply_patch, changes, actor="api")
        except RiskConfigError as exc:
            raise BadRequest(str(exc)) from None
        return self.state.snapshot()

    async def exploits(self) -> list[JsonObject]:
        return await self.service.exploits()

    async def add_exploit(self, alert: JsonObject) -> JsonObject:
        return await self.service.add_exploit(alert, actor="api")


def build_conformance_app(state_dir: Path) -> FastAPI:
    """The engine app over a store with a few records, real trading state and exploit alerts."""
    store = Store.open(f"sqlite:///{state_dir}/api.db")
    for i in range(1, 11):
        store.upsert_opportunity(opportunity(i))
        store.insert_trade(trade(i))
    config = {
        "chains": [
            {"name": name, "chain_id": i + 1, "rpc": ["http://127.0.0.1:9"], "wrapped_native": WETH}
            for i, name in enumerate(CHAINS)
        ]
    }
    state = TradingState.load(store, parse_settings(config, source="test", environ={}))
    service = ExploitService(state, MemoryBus(), store=store, known_chains=CHAINS)
    view = ConformanceView(store, state, service)
    return make_app(state_dir, view=view, chains=CHAINS)


_state_dir = Path(tempfile.mkdtemp(prefix="mevstack-schemathesis-"))
atexit.register(shutil.rmtree, _state_dir, ignore_errors=True)
schema = schemathesis.openapi.from_asgi("/openapi.json", build_conformance_app(_state_dir))


def no_server_error_but_not_built(
    ctx: object, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Like not_a_server_error, except the documented 503 of a feature that is not built."""
    if response.status_code < 500:
        return None
    if response.status_code == 503 and response.json()["error"]["code"] == "not_available":
        return None
    raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")


def check_case(case: schemathesis.Case[Any], who: str, **call: Any) -> None:
    """Call the operation as ``who`` and run every check (see the module docstring)."""
    excluded: list[CheckFunction] = [schemathesis.checks.not_a_server_error]
    if "cursor" in (case.query or {}):
        excluded.append(positive_data_acceptance)
    # Every case carries the token (overriding the bogus one generated from the security
    # scheme), so every operation is exercised past auth; except when the headers themselves
    # were generated to be invalid: a removed or broken Authorization header must be refused.
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    broken_headers = headers is not None and headers.mode == GenerationMode.NEGATIVE
    token = {} if broken_headers else {"Authorization": f"Bearer {PLAIN[who]}"}
    case.call_and_validate(
        headers=token,
        excluded_checks=excluded,
        additional_checks=[no_server_error_but_not_built],
        **call,
    )


@pytest.mark.parametrize("who", ["admin", "reader"])
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case[Any], who: str) -> None:
    check_case(case, who)
