"""Deploying one devnet chain: WETH9, our ERC-20s, two Uniswap V2 DEXes, Uniswap V3, seeded pools.

``deploy_chain`` is **synchronous** (call it from a thread to deploy several chains at once).  It
deploys the shipped npm bytecode as-is from anvil's unlocked account 0 under automine and seeds
liquidity through the real periphery (Router02 ``addLiquidity``, the position manager's
``createAndInitializePoolIfNecessary`` and ``mint``), so every pool is created exactly as on
mainnet.  The returned ``ChainDeployment`` also records what was seeded (reserves, initial
prices, positions) so tests can compare it with what the chain reads back.

Speed: contract addresses follow from the deployer's nonces, so every transaction is sent back
to back with an explicit nonce and gas limit (no gas estimation against a state that does not
exist yet) and confirmed afterwards by batched receipt polls: about half a second per chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevstack.devnet import artifacts, catalog
from mevstack.devnet.rpc import (
    AccountSender,
    DevnetRpc,
    create2_address,
    decode_result,
    encode_args,
    encode_call,
)
from mevstack.errors import DevnetError

MAX_UINT256 = 2**256 - 1
DEADLINE = 2**40  # far future; the deadline check itself is not under test here
INCREASE_LIQUIDITY_TOPIC = keccak(text="IncreaseLiquidity(uint256,uint128,uint256,uint256)")
V2_FEE_BPS = 30  # hard-coded in the shipped UniswapV2Pair bytecode
# The descriptor is only used by tokenURI, which nothing here calls (see DESIGN notes).
NO_TOKEN_DESCRIPTOR = "0x000000000000000000000000000000000000dEaD"
V2_DEX_NAMES = ("uniswap-v2", "sushi-v2")
V3_DEX_NAME = "uniswap-v3"


@dataclass(frozen=True, slots=True)
class Token:
    address: str
    symbol: str
    decimals: int


@dataclass(frozen=True, slots=True)
class V2Dex:
    name: str
    factory: str
    router: str
    init_code_hash: str
    fee_bps: int = V2_FEE_BPS


@dataclass(frozen=True, slots=True)
class V3Dex:
    name: str
    factory: str
    swap_router: str
    position_manager: str
    quoter_v2: str
    tick_lens: str
    init_code_hash: str


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """One pool.  ``fee`` is in hundredths of a bip for both kinds (V2: 3000 = 0.3%)."""

    dex: str
    kind: Literal["uniswap_v2", "uniswap_v3"]
    address: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int | None = None  # V3 only

    @property
    def fee_bps(self) -> int:
        return self.fee // 100


@dataclass(frozen=True, slots=True)
class V2Reserves:
    """Reserves seeded into a V2 pair (token0/token1 order)."""

    pool: str
    reserve0: int
    reserve1: int


@dataclass(frozen=True, slots=True)
class V3Position:
    """A position minted through the position manager, as its IncreaseLiquidity event said."""

    pool: str
    token_id: int
    tick_lower: int
    tick_upper: int
    liquidity: int
    amount0: int
    amount1: int


@dataclass(frozen=True, slots=True)
class ChainDeployment:
    chain_id: int
    deployer: str
    weth: str
    tokens: dict[str, Token]
    v2: list[V2Dex]
    v3: V3Dex
    pools: list[PoolInfo]
    v2_reserves: dict[str, V2Reserves] = field(default_factory=dict)
    v3_sqrt_price_x96: dict[str, int] = field(default_factory=dict)
    v3_positions: list[V3Position] = field(default_factory=list)
    block_number: int = 0  # the block after which everything above holds

    def token(self, symbol: str) -> Token:
        try:
            return self.tokens[symbol]
        except KeyError:
            raise DevnetError(f"no token {symbol!r} on chain {self.chain_id}") from None

    def pool(self, dex: str, symbol_a: str, symbol_b: str, fee: int | None = None) -> PoolInfo:
        a, b = self.token(symbol_a).address, self.token(symbol_b).address
        for p in self.pools:
            if p.dex == dex and {p.token0, p.token1} == {a, b} and (fee is None or p.fee == fee):
                return p
        raise DevnetError(f"no {dex} pool {symbol_a}/{symbol_b} on chain {self.chain_id}")


def _sorted_pair(a: Token, b: Token) -> tuple[Token, Token]:
    return (a, b) if int(a.address, 16) < int(b.address, 16) else (b, a)


def deploy_chain(rpc_url: str, *, seed: int = 0) -> ChainDeployment:
    """Deploy and seed everything on the (automining) anvil at ``rpc_url``; see module doc."""
    with DevnetRpc(rpc_url) as rpc:
        return _deploy(rpc, seed)


def _deploy(rpc: DevnetRpc, seed: int) -> ChainDeployment:
    chain_id = int(rpc.call("eth_chainId"), 16)
    accounts = rpc.call("eth_accounts")
    if not accounts:
        raise DevnetError(f"node {rpc.url} has no unlocked account to deploy from")
    deployer = str(to_checksum_address(accounts[0]))
    tx = AccountSender(rpc, deployer)

    # 1. Contracts.  Addresses follow from the nonces, so nothing waits until the receipts.
    weth = tx.deploy(artifacts.load_artifact(artifacts.WETH9).bytecode)
    tokens: dict[str, Token] = {"WETH": Token(weth, "WETH", 18)}
    for spec in catalog.TOKENS:
        code = artifacts.compile_vyper("erc20_nobool" if spec.no_bool else "erc20").bytecode
        supply = catalog.TOKEN_SUPPLY_WHOLE * 10**spec.decimals
        ctor = encode_args(
            ["string", "string", "uint8", "uint256"], spec.name, spec.symbol, spec.decimals, supply
        )
        tokens[spec.symbol] = Token(tx.deploy(code, ctor), spec.symbol, spec.decimals)

    pair_hash = keccak(artifacts.load_artifact(artifacts.V2_PAIR).bytecode)
    v2: list[V2Dex] = []
    for name in V2_DEX_NAMES:
        factory = tx.deploy(
            artifacts.load_artifact(artifacts.V2_FACTORY).bytecode,
            encode_args(["address"], deployer),
        )
        router = tx.deploy(
            artifacts.load_artifact(artifacts.V2_ROUTER02).bytecode,
            encode_args(["address", "address"], factory, weth),
        )
        v2.append(V2Dex(name, factory, router, "0x" + pair_hash.hex()))

    pool_hash = keccak(artifacts.load_artifact(artifacts.V3_POOL).bytecode)
    v3_factory = tx.deploy(artifacts.load_artifact(artifacts.V3_FACTORY).bytecode, gas=8_000_000)
    with_weth = encode_args(["address", "address"], v3_factory, weth)
    swap_router = tx.deploy(artifacts.load_artifact(artifacts.V3_SWAP_ROUTER).bytecode, with_weth)
    npm = tx.deploy(
        artifacts.load_artifact(artifacts.V3_POSITION_MANAGER).bytecode,
        encode_args(["address", "address", "address"], v3_factory, weth, NO_TOKEN_DESCRIPTOR),
        gas=8_000_000,
    )
    quoter = tx.deploy(artifacts.load_artifact(artifacts.V3_QUOTER_V2).bytecode, with_weth)
    tick_lens = tx.deploy(artifacts.load_artifact(artifacts.V3_TICK_LENS).bytecode)
    v3 = V3Dex(V3_DEX_NAME, v3_factory, swap_router, npm, quoter, tick_lens, "0x" + pool_hash.hex())

    # 2. Plan the liquidity, wrap the ETH it needs, approve the periphery.
    v2_plans = [catalog.v2_plan(catalog.skews(seed * 7 + i, len(catalog.V2_PAIRS))) for i in (1, 2)]
    v3_skews = catalog.skews(seed * 7 + 3, len(catalog.V3_POOLS))
    v3_plans = []
    for (sym_a, sym_b, fee, budget), k in zip(catalog.V3_POOLS, v3_skews, strict=True):
        t0, t1 = _sorted_pair(tokens[sym_a], tokens[sym_b])
        # The skew applies to the A-in-B price; flip it when the address order flips the pair.
        skew = k if t0.symbol == sym_a else 1 / k
        v3_plans.append(catalog.v3_pool_plan(t0.symbol, t1.symbol, fee, budget, skew))
    weth_needed = sum(
        s.amount_a if s.symbol_a == "WETH" else s.amount_b if s.symbol_b == "WETH" else 0
        for plan in v2_plans
        for s in plan
    ) + sum(
        pos.amount0_desired if p.token0 == "WETH" else pos.amount1_desired
        for p in v3_plans
        if "WETH" in (p.token0, p.token1)
        for pos in p.positions
    )
    balance = int(rpc.call("eth_getBalance", [deployer, "latest"]), 16)
    if balance < weth_needed + 10**18:
        raise DevnetError(
            f"deployer {deployer} holds {balance / 1e18:.0f} ETH on {rpc.url}; "
            f"seeding needs {weth_needed / 1e18:.0f} ETH"
        )
    tx.send(weth, encode_call("deposit()"), value=weth_needed, gas=100_000)
    spenders = [d.router for d in v2] + [npm]
    for token in tokens.values():
        for spender in spenders:
            tx.send(
                token.address,
                encode_call("approve(address,uint256)", spender, MAX_UINT256),
                gas=100_000,
            )
    tx.confirm()

    # 3. V2 pairs: Router02.addLiquidity creates each pair and takes both amounts as given.
    pools: list[PoolInfo] = []
    v2_reserves: dict[str, V2Reserves] = {}
    for dex, plan in zip(v2, v2_plans, strict=True):
        for s in plan:
            a, b = tokens[s.symbol_a], tokens[s.symbol_b]
            tx.send(
                dex.router,
                encode_call(
                    "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
                    a.address,
                    b.address,
                    s.amount_a,
                    s.amount_b,
                    s.amount_a,
                    s.amount_b,
                    deployer,
                    DEADLINE,
                ),
                gas=4_000_000,
            )
            t0, t1 = _sorted_pair(a, b)
            salt = keccak(bytes.fromhex(t0.address[2:]) + bytes.fromhex(t1.address[2:]))
            address = create2_address(dex.factory, salt, pair_hash)
            pools.append(
                PoolInfo(dex.name, "uniswap_v2", address, t0.address, t1.address, dex.fee_bps * 100)
            )
            r0, r1 = (s.amount_a, s.amount_b) if t0 is a else (s.amount_b, s.amount_a)
            v2_reserves[address] = V2Reserves(address, r0, r1)

    # 4. V3 pools: created and initialised by the position manager, then one mint per range.
    v3_prices: dict[str, int] = {}
    mint_pools: list[str] = []
    mint_sig = (
        "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))"
    )
    for p in v3_plans:
        t0, t1 = tokens[p.token0], tokens[p.token1]
        address = create2_address(
            v3_factory,
            keccak(encode_args(["address", "address", "uint24"], t0.address, t1.address, p.fee)),
            pool_hash,
        )
        tx.send(
            npm,
            encode_call(
                "createAndInitializePoolIfNecessary(address,address,uint24,uint160)",
                t0.address,
                t1.address,
                p.fee,
                p.sqrt_price_x96,
            ),
            gas=6_000_000,
        )
        pools.append(
            PoolInfo(
                V3_DEX_NAME, "uniswap_v3", address, t0.address, t1.address, p.fee, p.tick_spacing
            )
        )
        v3_prices[address] = p.sqrt_price_x96
        for pos in p.positions:
            params = (
                t0.address,
                t1.address,
                p.fee,
                pos.tick_lower,
                pos.tick_upper,
                pos.amount0_desired,
                pos.amount1_desired,
                0,
                0,
                deployer,
                DEADLINE,
            )
            tx.send(npm, encode_call(mint_sig, params), gas=1_000_000)
            mint_pools.append(address)
    receipts = tx.confirm()

    positions: list[V3Position] = []
    increase_logs = [
        log
        for receipt in receipts
        for log in receipt["logs"]
        if log["address"].lower() == npm.lower()
        and bytes.fromhex(log["topics"][0][2:]) == INCREASE_LIQUIDITY_TOPIC
    ]
    if len(increase_logs) != len(mint_pools):
        raise DevnetError(
            f"expected {len(mint_pools)} minted positions on {rpc.url}, saw {len(increase_logs)}"
        )
    plan_positions = [pos for p in v3_plans for pos in p.positions]
    for log, pool, pos in zip(increase_logs, mint_pools, plan_positions, strict=True):
        liquidity, amount0, amount1 = decode_result(
            ["uint128", "uint256", "uint256"], bytes.fromhex(log["data"][2:])
        )
        positions.append(
            V3Position(
                pool,
                int(log["topics"][1], 16),
                pos.tick_lower,
                pos.tick_upper,
                liquidity,
                amount0,
                amount1,
            )
        )
    block = int(rpc.call("eth_blockNumber"), 16)
    return ChainDeployment(
        chain_id=chain_id,
        deployer=deployer,
        weth=weth,
        tokens=tokens,
        v2=v2,
        v3=v3,
        pools=pools,
        v2_reserves=v2_reserves,
        v3_sqrt_price_x96=v3_prices,
        v3_positions=positions,
        block_number=block,
    )
