"""The dashboard's real surroundings: a mining devnet chain with our executor deployed and an
operator keystore, ``mevstack up``'s stack in live mode (engine, gateway, WebSocket and the
dashboard server) on free ports, and Debian Chromium via Playwright."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from playwright.async_api import Browser, Page, async_playwright

from mevstack.api.auth import hash_token
from mevstack.chain.rpc import RpcClient
from mevstack.config import Settings, parse_settings
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.devnet.deploy import ChainDeployment, deploy_chain
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.engine.engine import EngineProcess, running_stack
from mevstack.execution.deploy import deploy_executor
from tests.engine.world import chain_entry

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path("test-artifacts/screenshots")
DOCS_SCREENSHOT = Path("docs/screenshots/dashboard.png")
TOKENS = {
    "ops": ("mvt_test_ops_token_for_the_dashboard", ["read", "trade", "admin"]),
    "trader": ("mvt_test_trader_token_for_the_dashboard", ["read", "trade"]),
    "viewer": ("mvt_test_viewer_token_for_the_dashboard", ["read"]),
}
PASSWORD_ENV = "MEVSTACK_DASHBOARD_TEST_KEY_PASSWORD"
WEI = 10**18


@dataclass
class Operator:
    """The devnet chain's funded operator key (in a keystore) and its deployed executor."""

    account: LocalAccount
    keystore: Path
    password: str
    executor: str


@dataclass
class Stack:
    node: Anvil
    dep: ChainDeployment
    settings: Settings
    process: EngineProcess
    dashboard_url: str
    gateway_url: str
    operator: Operator


def _mining(node: Anvil, seconds: int) -> None:
    with DevnetRpc(node.rpc_url) as rpc:
        rpc.call("evm_setAutomine", [False])
        rpc.call("evm_setIntervalMining", [seconds])


@pytest.fixture(scope="module")
def dash_chain() -> Iterator[tuple[Anvil, ChainDeployment]]:
    """A devnet chain of the dashboard's own, mining a block every second like a real chain."""
    with Anvil(chain_id=1, balance_eth=1_000_000) as node:
        dep = deploy_chain(node.rpc_url)
        _mining(node, 1)
        yield node, dep


@pytest.fixture(scope="module")
def second_chain() -> Iterator[tuple[Anvil, ChainDeployment]]:
    """A second devnet chain (Base's chain id, 2 s blocks): the panels are per chain."""
    with Anvil(chain_id=8453, balance_eth=1_000_000) as node:
        dep = deploy_chain(node.rpc_url)
        _mining(node, 2)
        yield node, dep


@pytest.fixture(scope="module")
async def operator(
    dash_chain: tuple[Anvil, ChainDeployment], tmp_path_factory: pytest.TempPathFactory
) -> Operator:
    """An operator with gas money and an executor on the dashboard's chain, as the demo sets up."""
    node, dep = dash_chain
    account: LocalAccount = Account.create()
    password = secrets.token_hex(16)
    keystore = tmp_path_factory.mktemp("dashboard-keys") / "key.json"
    encrypted = await asyncio.to_thread(Account.encrypt, account.key, password)
    keystore.write_text(json.dumps(encrypted), encoding="utf-8")
    with DevnetRpc(node.rpc_url, timeout=60) as rpc:
        rpc.call("anvil_setBalance", [account.address, hex(100 * WEI)])
        async with RpcClient(node.rpc_url) as client:
            executor = await deploy_executor(
                client, account, owner=dep.deployer, wrapped_native=dep.weth
            )
        # inventory for paths that cannot borrow their input (a V3 first hop)
        deposit = encode_call("deposit()")
        await asyncio.to_thread(rpc.transact, dep.deployer, dep.weth, deposit, value=100 * WEI)
        transfer = encode_call("transfer(address,uint256)", executor, 100 * WEI)
        await asyncio.to_thread(rpc.transact, dep.deployer, dep.weth, transfer)
    return Operator(account, keystore, password, executor)


def distinct_ports(count: int) -> list[int]:
    """Free ports, all different (two free_port calls may hand out the same port)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def stack_settings(
    node: Anvil,
    dep: ChainDeployment,
    state_dir: Path,
    second: tuple[Anvil, ChainDeployment],
    operator: Operator,
) -> Settings:
    engine, gateway, ws, dashboard = distinct_ports(4)
    origin = f"http://127.0.0.1:{dashboard}"
    return parse_settings(
        {
            # live, but trades only on a trader's click: the test decides what is executed
            "engine": {"state_dir": str(state_dir), "mode": "live", "auto_execute": False},
            "execution": {"keystore": str(operator.keystore), "password_env": PASSWORD_ENV},
            "database": {"url": f"sqlite:///{state_dir}/mevstack.db"},
            "server": {
                "host": "127.0.0.1",
                "engine_port": engine,
                "gateway_port": gateway,
                "ws_port": ws,
                "dashboard_port": dashboard,
                "backends": [f"http://127.0.0.1:{engine}"],
                "cors_origins": [origin],
                "public_read": False,
            },
            "auth": {
                "tokens": [
                    {"name": name, "scopes": scopes, "sha256": hash_token(token)}
                    for name, (token, scopes) in TOKENS.items()
                ]
            },
            "chains": [
                chain_entry(
                    "ethereum", node.rpc_url, dep, executor=operator.executor, confirmations=1
                ),
                chain_entry("base", second[0].rpc_url, second[1], block_time=2.0),
            ],
        },
        source="test",
        environ={},
    )


@pytest.fixture(scope="module")
async def stack(
    dash_chain: tuple[Anvil, ChainDeployment],
    second_chain: tuple[Anvil, ChainDeployment],
    operator: Operator,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    node, dep = dash_chain
    state = tmp_path_factory.mktemp("dashboard-state")
    settings = stack_settings(node, dep, state, second_chain, operator)
    server = settings.server
    os.environ[PASSWORD_ENV] = operator.password
    try:
        # `mevstack up`'s stack serves the dashboard itself, as in production.
        async with running_stack(settings) as process:
            assert process.engine.executions, process.engine.execution_missing
            yield Stack(
                node,
                dep,
                settings,
                process,
                f"http://127.0.0.1:{server.dashboard_port}/",
                f"http://127.0.0.1:{server.gateway_port}",
                operator,
            )
    finally:
        os.environ.pop(PASSWORD_ENV, None)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1600, "height": 1100})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


async def login(page: Page, url: str, who: str) -> None:
    await page.goto(url)
    await page.fill("#login-token", TOKENS[who][0])
    await page.click("#login-submit")
    await page.wait_for_selector("#app:not([hidden])")


def exact_units(value: int, decimals: int) -> str:
    """The page's exact formatting of base units, rebuilt independently with Python ints."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    fraction = str(frac).rjust(decimals, "0").rstrip("0")
    return sign + f"{whole:,}" + ("." + fraction if fraction else "")


def _publish(path: Path) -> None:
    DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_SCREENSHOT)


async def screenshot(page: Page, name: str, *, publish: bool = False) -> Path:
    """Save a full-page screenshot (Playwright creates the folder).  With ``publish`` and
    ``MEVSTACK_UPDATE_SCREENSHOTS=1`` it is also copied to ``docs/screenshots/dashboard.png``, the
    one the README shows: a plain test run never rewrites a tracked file."""
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if publish and os.environ.get("MEVSTACK_UPDATE_SCREENSHOTS") == "1":
        _publish(path)
    return path
