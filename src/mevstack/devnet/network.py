"""The local multi-chain devnet: start the anvil chains, deploy on each, switch to interval mining.

``Devnet.start`` is the whole sequence behind ``mevstack devnet``:

1. check every port first (a second devnet, or anything else on a port, is one clear error and
   nothing is started), then start one automining anvil per chain with its real chain id;
2. deploy and seed every chain in parallel (threads: the work is in the anvil processes), and on
   OP-stack chains place the fee predeploys;
3. switch each chain to interval mining at its scaled block time.

anvil's ``evm_setIntervalMining`` takes whole seconds only (verified against anvil 1.7.1: ``0.5``
is rejected as "invalid number", while ``--block-time 0.25`` on the command line works but then
deployment would have to wait for blocks).  Deploying under automine is what keeps start-up at a
few seconds, so block times are rounded to whole seconds with a floor of one second, and the
config records the block time actually in force.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mevstack.devnet import artifacts
from mevstack.devnet.anvil import Anvil, port_in_use
from mevstack.devnet.deploy import ChainDeployment, deploy_chain
from mevstack.devnet.opstack import install_op_stack_fee_contracts
from mevstack.devnet.rpc import DevnetRpc
from mevstack.errors import DevnetError

ACCOUNT_BALANCE_ETH = 1_000_000  # per anvil account: seeds pools and funds the noise traders


@dataclass(frozen=True, slots=True)
class ChainSpec:
    name: str
    chain_id: int
    real_block_time: float  # seconds, as on the real network
    op_stack: bool = False


CHAIN_SPECS: tuple[ChainSpec, ...] = (
    ChainSpec("ethereum", 1, 12.0),
    ChainSpec("arbitrum", 42161, 0.25),
    ChainSpec("optimism", 10, 2.0, op_stack=True),
    ChainSpec("polygon", 137, 2.0),
    ChainSpec("base", 8453, 2.0, op_stack=True),
)
MIN_BLOCK_TIME = 1  # whole seconds: the finest interval anvil's RPC accepts


def select_chains(names_csv: str) -> list[ChainSpec]:
    """Chains named in a comma-separated list, in the canonical order; unknown names are errors."""
    wanted = [n.strip().lower() for n in names_csv.split(",") if n.strip()]
    known = {spec.name: spec for spec in CHAIN_SPECS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise DevnetError(f"unknown chain {unknown[0]!r} in --chains (known: {', '.join(known)})")
    if not wanted:
        raise DevnetError("--chains names no chain")
    return [spec for spec in CHAIN_SPECS if spec.name in wanted]


def scaled_block_time(real_seconds: float, time_scale: float) -> int:
    """The devnet block time: real x scale, rounded to whole seconds, at least one second."""
    if not time_scale > 0:
        raise DevnetError(f"--time-scale must be a positive number, got {time_scale}")
    return max(MIN_BLOCK_TIME, round(real_seconds * time_scale))


def chain_port(spec: ChainSpec, base_port: int) -> int:
    """Ports follow the canonical order, so a chain keeps its port whichever chains run."""
    return base_port + CHAIN_SPECS.index(spec)


@dataclass
class DevnetChain:
    spec: ChainSpec
    anvil: Anvil
    block_time: int
    deployment: ChainDeployment | None = None
    deploy_seconds: float = 0.0


@dataclass
class Devnet:
    """Owns every anvil it starts; ``stop()`` (or leaving the ``with`` block) ends them all."""

    specs: list[ChainSpec]
    base_port: int = 8545
    time_scale: float = 0.25
    host: str = "127.0.0.1"
    seed: int = 0
    log_dir: Path | None = None
    chains: list[DevnetChain] = field(default_factory=list)
    startup_seconds: float = 0.0

    def start(self) -> list[DevnetChain]:
        started = time.monotonic()
        if not 1 <= self.base_port <= 65535 - len(CHAIN_SPECS):
            raise DevnetError(f"--base-port {self.base_port} is out of range")
        block_times = {
            s.name: scaled_block_time(s.real_block_time, self.time_scale) for s in self.specs
        }
        for spec in self.specs:
            port = chain_port(spec, self.base_port)
            if port_in_use(port, self.host):
                raise DevnetError(
                    f"port {self.host}:{port} for {spec.name} is already in use "
                    "(is a devnet already running? stop it, or pass --base-port)"
                )
        try:
            for spec in self.specs:
                node = Anvil(
                    chain_id=spec.chain_id,
                    port=chain_port(spec, self.base_port),
                    host=self.host,
                    balance_eth=ACCOUNT_BALANCE_ETH,
                    log_path=self.log_dir / f"anvil-{spec.name}.log" if self.log_dir else None,
                    die_with_parent=True,
                )
                # Registered before start so a failure part-way still stops what did start.
                self.chains.append(DevnetChain(spec, node, block_times[spec.name]))
                node.start()
            # Warm the compiler cache once, not from five threads at the same time.
            artifacts.compile_vyper("erc20")
            artifacts.compile_vyper("erc20_nobool")
            with ThreadPoolExecutor(max_workers=len(self.chains)) as pool:
                for future in [pool.submit(self._deploy_one, c) for c in self.chains]:
                    future.result()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self.chains

    def _deploy_one(self, chain: DevnetChain) -> None:
        began = time.monotonic()
        chain.deployment = deploy_chain(chain.anvil.rpc_url, seed=self.seed + chain.spec.chain_id)
        with DevnetRpc(chain.anvil.rpc_url) as rpc:
            if chain.spec.op_stack:
                install_op_stack_fee_contracts(rpc)
            rpc.call("evm_setAutomine", [False])
            rpc.call("evm_setIntervalMining", [chain.block_time])
        chain.deploy_seconds = time.monotonic() - began

    def stop(self) -> None:
        for chain in reversed(self.chains):
            chain.anvil.stop()

    def dead_chains(self) -> list[str]:
        """Names of chains whose anvil process has exited."""
        return [c.spec.name for c in self.chains if not c.anvil.running]

    def __enter__(self) -> Devnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def render_config(chains: list[DevnetChain]) -> str:
    """The config file (docs/contracts.md format) that points mevstack at these running chains."""
    lines = [
        "# Written by `mevstack devnet`: local anvil chains with real Uniswap V2/V3 contracts.",
        "# Valid while that devnet runs; it is rewritten on every start.",
        "",
    ]
    for chain in chains:
        d = chain.deployment
        if d is None:
            raise DevnetError(f"chain {chain.spec.name} has no deployment to write")
        lines += [
            "[[chains]]",
            f"name = {_toml_str(chain.spec.name)}",
            f"chain_id = {chain.spec.chain_id}",
            f"rpc = {_toml_list([chain.anvil.rpc_url])}",
            f"ws = {_toml_list([chain.anvil.ws_url])}",
            f"block_time = {float(chain.block_time)}",
            f"base_tokens = {_toml_list([d.weth, d.tokens['USDC'].address])}",
            f"wrapped_native = {_toml_str(d.weth)}",
            "",
        ]
        for dex in d.v2:
            lines += [
                "[[chains.dexes]]",
                f"name = {_toml_str(dex.name)}",
                'kind = "uniswap_v2"',
                f"factory = {_toml_str(dex.factory)}",
                f"fee_bps = {dex.fee_bps}",
                f"init_code_hash = {_toml_str(dex.init_code_hash)}",
                "",
            ]
        lines += [
            "[[chains.dexes]]",
            f"name = {_toml_str(d.v3.name)}",
            'kind = "uniswap_v3"',
            f"factory = {_toml_str(d.v3.factory)}",
            f"init_code_hash = {_toml_str(d.v3.init_code_hash)}",
            "",
        ]
    return "\n".join(lines)


def deployment_document(chains: list[DevnetChain]) -> dict[str, object]:
    """Everything deployed per chain (routers, quoter, tokens, pools, seeds) for tools."""
    out: dict[str, object] = {}
    for chain in chains:
        if chain.deployment is not None:
            out[chain.spec.name] = {
                "rpc": chain.anvil.rpc_url,
                "ws": chain.anvil.ws_url,
                "block_time": chain.block_time,
                **dataclasses.asdict(chain.deployment),
            }
    return out


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a config."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise DevnetError(f"cannot write {path}: {exc.strerror or exc}") from None
