"""``mevstack demo``: the five-chain devnet with market activity and the whole stack in live mode.

DEVNET ONLY.  Everything here is throw-away: a fresh random operator key (funded from an anvil
account, stored in a keystore under the demo state dir, its generated password handed to the
engine through this process's environment only), an executor deployed on each chain and given
some WETH inventory (for paths that cannot borrow their input), a config in live mode with
auto-execution, and an admin API token minted into the demo store (a fresh one: the chains and
the operator are new on every run, so the previous run's database is moved aside rather than
followed against chains that no longer exist).  Then ``mevstack up`` runs in this process.
Ctrl-C (or SIGTERM) stops the servers, the noise traders and every anvil.
Everything before the stack is ``demo_world``, so a benchmark can run the same world in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from mevstack.api.auth import create_token
from mevstack.api.server import check_port_free
from mevstack.api.store_view import StoreTokens
from mevstack.chain.rpc import RpcClient
from mevstack.config import Settings, load_settings
from mevstack.devnet.activity import NoiseTraders
from mevstack.devnet.network import Devnet, DevnetChain, render_config, select_chains
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.errors import DevnetError, MevstackError
from mevstack.execution.deploy import deploy_executor
from mevstack.store import Store

WEI = 10**18
OPERATOR_FUNDING_WEI = 100 * WEI
EXECUTOR_INVENTORY_WEI = 1_000 * WEI
PASSWORD_ENV = "MEVSTACK_DEMO_KEY_PASSWORD"
ALL_CHAINS = "ethereum,arbitrum,optimism,polygon,base"


@dataclass
class DemoOptions:
    state_dir: Path = Path(".mevstack/demo")
    chains: str = ALL_CHAINS
    base_port: int = 8545
    engine_port: int = 8082
    gateway_port: int = 8093
    ws_port: int = 8094
    dashboard_port: int = 5002
    time_scale: float = 0.25
    seed: int = 0
    host: str = "127.0.0.1"


@dataclass
class _Activity:
    traders: list[NoiseTraders] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        for traders in self.traders:
            traders.close()


def _say(text: str) -> None:
    print(text, flush=True)


# -- pure ---------------------------------------------------------------------------------------


def with_executors(config_text: str, executors: dict[str, str]) -> str:
    """The devnet's ``[[chains]]`` config with each chain's ``executor`` line added."""
    out: list[str] = []
    in_chain = False
    chain: str | None = None
    for line in config_text.splitlines():
        if line.startswith("[["):
            in_chain = line.strip() == "[[chains]]"
        if in_chain and line.startswith("name = "):
            chain = json.loads(line.split("=", 1)[1].strip())
        out.append(line)
        if in_chain and chain is not None and line.startswith("wrapped_native = "):
            out.append(f"executor = {json.dumps(executors[chain])}")
    return "\n".join(out) + "\n"


def demo_config(options: DemoOptions, chains_text: str, keystore: Path) -> str:
    state = options.state_dir.resolve()
    engine_url = f"http://{options.host}:{options.engine_port}"
    dashboard = f"http://{options.host}:{options.dashboard_port}"
    head = [
        "# Written by `mevstack demo`: DEVNET ONLY, a throw-away key on local anvil chains.",
        "[engine]",
        'mode = "live"',
        "auto_execute = true",
        f"state_dir = {json.dumps(str(state))}",
        "[database]",
        f"url = {json.dumps(f'sqlite:///{state}/mevstack.db')}",
        "[server]",
        f"host = {json.dumps(options.host)}",
        f"engine_port = {options.engine_port}",
        f"gateway_port = {options.gateway_port}",
        f"ws_port = {options.ws_port}",
        f"dashboard_port = {options.dashboard_port}",
        f"backends = [{json.dumps(engine_url)}]",
        f"cors_origins = [{json.dumps(dashboard)}, "
        f"{json.dumps(f'http://localhost:{options.dashboard_port}')}]",
        "[execution]",
        f"keystore = {json.dumps(str(keystore.resolve()))}",
        f"password_env = {json.dumps(PASSWORD_ENV)}",
        "",
    ]
    return "\n".join(head) + chains_text


def banner(dashboard_url: str, token: str, chains: Sequence[str], operator: str) -> str:
    rule = "=" * 78
    return "\n".join(
        [
            rule,
            "  MEVSTACK DEMO  --  DEVNET ONLY: local anvil chains, a throw-away operator key",
            rule,
            f"  chains     : {', '.join(chains)}",
            f"  operator   : {operator} (devnet key, live mode, auto-execute on)",
            f"  dashboard  : {dashboard_url}",
            f"  login token: {token}",
            "  Ctrl-C stops everything (servers, noise traders, every anvil).",
            rule,
        ]
    )


# -- setup --------------------------------------------------------------------------------------


def _check_ports(options: DemoOptions) -> None:
    for port, what in (
        (options.engine_port, "engine"),
        (options.gateway_port, "gateway"),
        (options.ws_port, "websocket"),
        (options.dashboard_port, "dashboard"),
    ):
        try:
            check_port_free(options.host, port, what)
        except MevstackError as exc:
            raise DevnetError(f"{exc} (is another stack running? pass other ports)") from None


def _fund(chain: DevnetChain, operator: str) -> None:
    """Native gas money for the operator from anvil account 0 (a real transfer)."""
    with DevnetRpc(chain.anvil.rpc_url, timeout=60) as rpc:
        deployment = chain.deployment
        assert deployment is not None
        rpc.transact(deployment.deployer, operator, value=OPERATOR_FUNDING_WEI)


def _stock(chain: DevnetChain, executor: str) -> None:
    """WETH inventory for the executor: paths whose first hop cannot lend (V3) need it."""
    deployment = chain.deployment
    assert deployment is not None
    with DevnetRpc(chain.anvil.rpc_url, timeout=60) as rpc:
        rpc.transact(
            deployment.deployer,
            deployment.weth,
            encode_call("deposit()"),
            value=EXECUTOR_INVENTORY_WEI,
        )
        rpc.transact(
            deployment.deployer,
            deployment.weth,
            encode_call("transfer(address,uint256)", executor, EXECUTOR_INVENTORY_WEI),
        )


async def _deploy(chain: DevnetChain, operator: LocalAccount) -> str:
    deployment = chain.deployment
    assert deployment is not None
    await asyncio.to_thread(_fund, chain, operator.address)
    async with RpcClient(chain.anvil.rpc_url) as rpc:
        executor = await deploy_executor(
            rpc, operator, owner=operator.address, wrapped_native=deployment.weth
        )
    await asyncio.to_thread(_stock, chain, executor)
    return executor


async def _mint_token(settings: Settings) -> str:
    store = Store.open(settings.database.url)
    try:
        token, _ = await create_token(
            StoreTokens(store), f"demo-admin-{secrets.token_hex(3)}", "read,trade,admin"
        )
    finally:
        store.close()
    return token


def _start_activity(chains: list[DevnetChain], seed: int) -> _Activity:
    activity = _Activity()

    def trade(traders: NoiseTraders, block_time: float) -> None:
        try:
            traders.setup()
            traders.run(activity.stop, interval=block_time)
        except MevstackError as exc:
            _say(f"mevstack demo: noise traders stopped: {exc}")

    for chain in chains:
        assert chain.deployment is not None
        traders = NoiseTraders(
            chain.anvil.rpc_url, chain.deployment, seed=seed + chain.spec.chain_id
        )
        activity.traders.append(traders)
        thread = threading.Thread(
            target=trade,
            args=(traders, float(chain.block_time)),
            name=f"demo-activity-{chain.spec.name}",
            daemon=True,
        )
        activity.threads.append(thread)
    for thread in activity.threads:
        thread.start()
    return activity


def _set_aside_previous(state: Path) -> None:
    """Move the last run's SQLite database (and its journal files) to ``mevstack-previous.db``."""
    database = state / "mevstack.db"
    if not database.exists():
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        old = state / f"mevstack.db{suffix}"
        if old.exists():
            old.replace(state / f"mevstack-previous.db{suffix}")
    _say(f"mevstack demo: new chains, new database; the last run's is {state}/mevstack-previous.db")


async def _prepare(options: DemoOptions, chains: list[DevnetChain]) -> tuple[Settings, str, str]:
    state = options.state_dir
    state.mkdir(parents=True, exist_ok=True)
    _set_aside_previous(state)
    operator: LocalAccount = Account.create()
    password = secrets.token_urlsafe(24)
    keystore = state / "demo-operator-key.json"
    encrypted = await asyncio.to_thread(Account.encrypt, operator.key, password)
    keystore.write_text(json.dumps(encrypted), encoding="utf-8")
    keystore.chmod(0o600)
    # in-process only: the engine below reads the password from this environment
    os.environ[PASSWORD_ENV] = password
    executors = await asyncio.gather(*(_deploy(c, operator) for c in chains))
    by_chain = {c.spec.name: e for c, e in zip(chains, executors, strict=True)}
    config = state / "mevstack-demo.toml"
    config.write_text(
        demo_config(options, with_executors(render_config(chains), by_chain), keystore),
        encoding="utf-8",
    )
    settings = load_settings(config)
    token = await _mint_token(settings)
    return settings, token, operator.address


async def _run_stack(settings: Settings, on_ready: Callable[[], None]) -> None:
    from mevstack.engine.engine import running_stack, serve

    await serve(running_stack(settings), on_ready=on_ready)


@dataclass
class DemoWorld:
    """What ``mevstack demo`` runs the stack on: the chains (executors deployed, activity on),
    the live-mode settings, the admin token and the operator address."""

    devnet: Devnet
    chains: list[DevnetChain]
    settings: Settings
    token: str
    operator: str


@contextlib.contextmanager
def demo_world(options: DemoOptions) -> Iterator[DemoWorld]:
    """Start the demo's devnet, executors, config and noise traders (blocking set-up); leaving
    the block stops the traders and every anvil.  The stack itself is the caller's to run, so a
    benchmark can run the same world in-process."""
    specs = select_chains(options.chains)
    _check_ports(options)
    devnet = Devnet(
        specs,
        base_port=options.base_port,
        time_scale=options.time_scale,
        seed=options.seed,
        host=options.host,
        log_dir=options.state_dir / "logs",
    )
    activity: _Activity | None = None
    try:
        (options.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        _say(f"mevstack demo: starting {len(specs)} devnet chain(s)...")
        chains = devnet.start()
        _say(f"mevstack demo: chains up in {devnet.startup_seconds:.1f} s; deploying executors")
        settings, token, operator = asyncio.run(_prepare(options, chains))
        activity = _start_activity(chains, options.seed)
        yield DemoWorld(devnet, chains, settings, token, operator)
    finally:
        if activity is not None:
            activity.close()
        devnet.stop()


def run_demo(options: DemoOptions) -> int:
    """The whole command (blocking); 0 after a clean stop by Ctrl-C/SIGTERM."""
    # one INFO line per JSON-RPC request would bury the banner
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        with demo_world(options) as world:
            try:
                dashboard = f"http://{options.host}:{options.dashboard_port}"
                names = [c.spec.name for c in world.chains]
                # said once the dashboard, gateway and WebSocket listen, so the URL works at once
                text = banner(dashboard, world.token, names, world.operator)
                asyncio.run(_run_stack(world.settings, lambda: _say(text)))
                _say("mevstack demo: stopped")
            except KeyboardInterrupt:
                _say("mevstack demo: interrupted; stopping")
        return 0
    except KeyboardInterrupt:
        _say("mevstack demo: interrupted; stopping")
        return 0
