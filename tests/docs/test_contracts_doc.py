"""docs/contracts.md stays honest where that is cheap to check: every config key, engine route,
CLI command and option, make target, event name, WebSocket limit and emitted JSON field that the
code has is named in it, and its config example is one the config loader accepts."""

from __future__ import annotations

import argparse
import ast
import re
import tomllib
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import Route

from mevstack.api.app import create_app
from mevstack.api.auth import Authenticator, SessionSigner
from mevstack.api.view import UnavailableView
from mevstack.bus.base import DEFAULT_REPLAY_SIZE
from mevstack.chain.gas import GasQuote
from mevstack.chain.monitor import NodeStatus
from mevstack.cli import build_parser
from mevstack.config import Settings, parse_settings
from mevstack.events import EVENT_NAMES
from mevstack.gateway import ws
from mevstack.store.records import Trade
from mevstack.strategy.opportunity import Hop, Opportunity

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
ADDRESS = "0x" + "11" * 20


def _documented(name: str) -> bool:
    return f"`{name}`" in DOC


def _models(annotation: object) -> Iterator[type[BaseModel]]:
    """The pydantic models inside a field annotation (``X``, ``list[X]``, ``X | None``…)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key the config model accepts, dotted (``chains.dexes.fee_bps``)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        nested = list(_models(field.annotation))
        if not nested or prefix:
            keys.append(dotted)
        for sub in nested:
            keys += config_keys(sub, f"{dotted}.")
    return keys


def raw_table_keys(path: Path) -> set[str]:
    """Keys the raw ``[exploits]``/``[notify]`` tables accept: the allowed sets that
    ``exploits/settings.py`` passes to its unknown-key check."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named_sets: dict[str, ast.Set] = {
        node.targets[0].id: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Set)
    }

    def strings(node: ast.expr) -> set[str]:
        found: set[str] = set()
        if isinstance(node, ast.Name) and node.id in named_sets:
            return strings(named_sets[node.id])
        if isinstance(node, ast.Set):
            for element in node.elts:
                if isinstance(element, ast.Constant) and isinstance(element.value, str):
                    found.add(element.value)
                elif isinstance(element, ast.Starred):
                    found |= strings(element.value)
        return found

    keys: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "_no_unknown"
        ):
            keys |= strings(node.args[1])
    return keys


def test_every_config_key_of_the_model_is_documented() -> None:
    keys = config_keys(Settings)
    assert "chains.dexes.fee_bps" in keys and "server.rate_limit_window_s" in keys
    # a table key may be named as the table itself: `[exploits]`, `[[chains.dexes]]`
    forms = ("{}", "[{}]", "[[{}]]")
    missing = [k for k in keys if not any(_documented(f.format(k)) for f in forms)]
    assert missing == [], f"config keys missing from docs/contracts.md: {missing}"


def test_every_exploits_and_notify_key_is_documented() -> None:
    raw = {
        name
        for name, field in Settings.model_fields.items()
        if not list(_models(field.annotation)) and typing.get_origin(field.annotation) is dict
    }
    settings_module = ROOT / "src" / "mevstack" / "exploits" / "settings.py"
    if not raw:
        return  # folded into the typed model: the test above covers them
    keys = raw_table_keys(settings_module)
    assert {"block_ttl_seconds", "min_drop_bps", "dedup_seconds", "chat_id"} <= keys
    documented = set(re.findall(r"`((?:exploits|notify)\.[a-z_.<>]+)`", DOC))
    missing = sorted(k for k in keys if not any(d.rsplit(".", 1)[-1] == k for d in documented))
    assert missing == [], f"[exploits]/[notify] keys missing from docs/contracts.md: {missing}"


def test_the_config_example_is_accepted_by_the_loader() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC, re.S)
    assert blocks, "docs/contracts.md has no TOML example"
    for block in blocks:
        settings = parse_settings(tomllib.loads(block), source="docs/contracts.md", environ={})
        assert settings.chains, "the example should show a chain"


def _route_rows() -> set[tuple[str, str]]:
    rows = re.findall(r"^\| (GET|POST|PATCH|PUT|DELETE) \| `([^`]+)` \|", DOC, re.M)
    return {(method, path) for method, path in rows}


def test_every_engine_route_is_documented() -> None:
    app = create_app(
        view=UnavailableView(), authenticator=Authenticator(signer=SessionSigner(b"k" * 32))
    )
    # APIRoutes, plus the plain Route FastAPI adds for /openapi.json
    routes = [r for r in app.routes if isinstance(r, APIRoute | Route)]
    assert any(isinstance(r, APIRoute) for r in routes)
    wanted = {
        (method, route.path)
        for route in routes
        for method in (route.methods or ())
        if method != "HEAD"
    }
    assert ("POST", "/api/mev/opportunities/{opportunity_id}/execute") in wanted
    missing = sorted(wanted - _route_rows())
    assert missing == [], f"engine routes missing from the endpoint table: {missing}"


def _commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
                if nested:
                    yield from _commands(sub, (*words, name))
                else:
                    yield (*words, name), sub


def test_every_cli_command_and_option_is_documented() -> None:
    commands = list(_commands(build_parser()))
    assert len(commands) >= 12
    for words, parser in commands:
        command = "mevstack " + " ".join(words)
        rows = [line for line in DOC.splitlines() if line.startswith(f"| `{command}")]
        assert rows, f"no row for `{command}` in the command table"
        options = [
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help"
        ]
        missing = [o for o in options if o not in rows[0]]
        assert missing == [], f"`{command}`: options missing from its row: {missing}"


def test_every_make_target_is_documented() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony is not None
    missing = [t for t in phony.group(1).split() if not _documented(f"make {t}")]
    assert missing == [], f"make targets missing from docs/contracts.md: {missing}"


def test_event_names_and_websocket_limits_are_documented() -> None:
    missing = sorted(name for name in EVENT_NAMES if not _documented(name))
    assert missing == [], f"event names missing: {missing}"
    assert f"**{ws.SLOW_CLIENT_CLOSE_CODE}**" in DOC
    assert f"| {ws.SESSION_EXPIRED_CLOSE_CODE} |" in DOC
    assert f"{ws.MAX_MESSAGE_BYTES // 1024} KiB" in DOC
    assert f"at most {ws.DEFAULT_CLIENT_QUEUE:,} messages" in DOC
    assert f"last {DEFAULT_REPLAY_SIZE:,} events" in DOC


def _opportunity() -> Opportunity:
    hop = Hop("uniswap-v2", ADDRESS, ADDRESS, ADDRESS, 10, 12, "uniswap_v2")
    return Opportunity(
        id="x",
        chain="ethereum",
        chain_id=1,
        kind="arbitrage",
        block_number=1,
        token=ADDRESS,
        amount_in=10,
        amount_out=12,
        gross_profit=2,
        gas_estimate=1,
        gas_price_wei=1,
        gas_cost_wei=1,
        net_profit_wei=1,
        path=(hop,),
        trigger_tx=None,
        status="detected",
        detected_at="2026-01-01T00:00:00.000Z",
        expires_at_block=3,
    )


@pytest.mark.parametrize(
    ("shape", "document"),
    [
        ("Opportunity", lambda: _opportunity().to_json()),
        ("hop", lambda: _opportunity().path[0].to_json()),
        ("Trade", lambda: Trade(id="t", chain="ethereum", route="public", token=ADDRESS).to_json()),
        (
            "NodeStatus",
            lambda: NodeStatus(
                "ethereum", 1, "http://node", "ok", 1, 0.5, 0, 1.0, 2.0, 0.0, None, True, "now"
            ).to_json(),
        ),
        (
            "GasQuote",
            lambda: GasQuote("ethereum", 1, 1, 1, 1, 2, 3, "none", None, "now").to_json(),
        ),
    ],
)
def test_every_emitted_field_is_documented(
    shape: str, document: Callable[[], dict[str, Any]]
) -> None:
    missing = sorted(key for key in document() if not _documented(key))
    assert missing == [], f"{shape} fields missing from docs/contracts.md: {missing}"
