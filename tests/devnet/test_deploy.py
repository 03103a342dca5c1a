"""The deployed devnet chain reads back exactly as it was seeded (shipped bytecode, real math)."""

from __future__ import annotations

import pytest

from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc, encode_call

Devnet = tuple[Anvil, ChainDeployment]


@pytest.fixture(scope="module")
def rpc(devnet_chain: Devnet) -> DevnetRpc:
    return DevnetRpc(devnet_chain[0].rpc_url)


def test_tokens_and_contracts(devnet_chain: Devnet, rpc: DevnetRpc) -> None:
    _, d = devnet_chain
    assert d.chain_id == 1
    assert set(d.tokens) >= {"WETH", "USDC", "USDT", "DAI", "WBTC", "LINK"}
    assert {t.decimals for t in d.tokens.values()} >= {6, 8, 18}
    for token in d.tokens.values():
        assert rpc.view(token.address, "decimals()", ["uint8"]) == token.decimals
        assert rpc.view(token.address, "symbol()", ["string"]) == token.symbol
    assert d.tokens["WETH"].address == d.weth
    for dex in d.v2:
        assert rpc.view(dex.router, "factory()", ["address"]) == dex.factory
        assert rpc.view(dex.router, "WETH()", ["address"]) == d.weth
    assert len({dex.factory for dex in d.v2}) == 2
    assert rpc.view(d.v3.position_manager, "factory()", ["address"]) == d.v3.factory
    assert rpc.view(d.v3.swap_router, "WETH9()", ["address"]) == d.weth
    for fee, spacing in ((500, 10), (3000, 60), (10000, 200)):
        assert rpc.view(d.v3.factory, "feeAmountTickSpacing(uint24)", ["int24"], fee) == spacing


def test_usdt_style_transfer_returns_no_data(devnet_chain: Devnet, rpc: DevnetRpc) -> None:
    _, d = devnet_chain
    transfer = encode_call("transfer(address,uint256)", d.weth, 1)
    usdt = rpc.call(
        "eth_call",
        [
            {"from": d.deployer, "to": d.tokens["USDT"].address, "data": "0x" + transfer.hex()},
            "latest",
        ],
    )
    usdc = rpc.call(
        "eth_call",
        [
            {"from": d.deployer, "to": d.tokens["USDC"].address, "data": "0x" + transfer.hex()},
            "latest",
        ],
    )
    assert usdt == "0x"
    assert int(usdc, 16) == 1


def test_v2_pairs_read_back(devnet_chain: Devnet, rpc: DevnetRpc) -> None:
    _, d = devnet_chain
    v2_pools = [p for p in d.pools if p.kind == "uniswap_v2"]
    assert len(v2_pools) >= 10
    routers = {dex.name: dex.router for dex in d.v2}
    factories = {dex.name: dex.factory for dex in d.v2}
    for pool in v2_pools:
        assert (
            rpc.view(
                factories[pool.dex],
                "getPair(address,address)",
                ["address"],
                pool.token0,
                pool.token1,
            )
            == pool.address
        )
        assert rpc.view(pool.address, "token0()", ["address"]) == pool.token0
        r0, r1, _ = rpc.view(pool.address, "getReserves()", ["uint112", "uint112", "uint32"])
        seeded = d.v2_reserves[pool.address]
        assert (r0, r1) == (seeded.reserve0, seeded.reserve1)
        # Router02 derives the pair from its hard-coded init code hash: a wrong hash reverts here.
        amount_in = r0 // 1000
        amounts = rpc.view(
            routers[pool.dex],
            "getAmountsOut(uint256,address[])",
            ["uint256[]"],
            amount_in,
            [pool.token0, pool.token1],
        )
        expected = amount_in * 997 * r1 // (r0 * 1000 + amount_in * 997)
        assert list(amounts) == [amount_in, expected]


def test_v2_dexes_disagree_slightly(devnet_chain: Devnet) -> None:
    _, d = devnet_chain
    a = d.v2_reserves[d.pool("uniswap-v2", "WETH", "USDC").address]
    b = d.v2_reserves[d.pool("sushi-v2", "WETH", "USDC").address]
    price_a, price_b = a.reserve1 * b.reserve0, b.reserve1 * a.reserve0
    assert price_a != price_b
    assert abs(price_a - price_b) * 100 < price_a * 3  # within 3 %


def test_v3_pools_read_back(devnet_chain: Devnet, rpc: DevnetRpc) -> None:
    _, d = devnet_chain
    v3_pools = [p for p in d.pools if p.kind == "uniswap_v3"]
    assert {p.fee for p in v3_pools} == {500, 3000, 10000}
    for pool in v3_pools:
        assert (
            rpc.view(
                d.v3.factory,
                "getPool(address,address,uint24)",
                ["address"],
                pool.token0,
                pool.token1,
                pool.fee,
            )
            == pool.address
        )
        assert rpc.view(pool.address, "tickSpacing()", ["int24"]) == pool.tick_spacing
        slot0 = rpc.view(
            pool.address,
            "slot0()",
            ["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"],
        )
        sqrt_price, tick = slot0[0], slot0[1]
        assert sqrt_price == d.v3_sqrt_price_x96[pool.address]
        positions = [p for p in d.v3_positions if p.pool == pool.address]
        assert len(positions) == 3
        assert len({(p.tick_lower, p.tick_upper) for p in positions}) == 3
        in_range = sum(p.liquidity for p in positions if p.tick_lower <= tick < p.tick_upper)
        assert in_range > 0
        assert rpc.view(pool.address, "liquidity()", ["uint128"]) == in_range
        for position in positions:
            info = rpc.view(
                d.v3.position_manager,
                "positions(uint256)",
                ["uint96", "address", "address", "address", "uint24", "int24", "int24", "uint128"]
                + ["uint256"] * 4,
                position.token_id,
            )
            assert info[2:8] == (
                pool.token0,
                pool.token1,
                pool.fee,
                position.tick_lower,
                position.tick_upper,
                position.liquidity,
            )
        # The pool holds exactly what the mints paid in.
        for token, paid in (
            (pool.token0, sum(p.amount0 for p in positions)),
            (pool.token1, sum(p.amount1 for p in positions)),
        ):
            assert rpc.view(token, "balanceOf(address)", ["uint256"], pool.address) == paid
        # Every position boundary carries exactly the liquidity the mints put there.
        expected: dict[int, tuple[int, int]] = {}
        for p in positions:
            for tick_at, sign in ((p.tick_lower, 1), (p.tick_upper, -1)):
                gross, net = expected.get(tick_at, (0, 0))
                expected[tick_at] = (gross + p.liquidity, net + sign * p.liquidity)
        for tick_at, (gross, net) in expected.items():
            assert rpc.view(pool.address, "ticks(int24)", ["uint128", "int128"], tick_at) == (
                gross,
                net,
            )


def test_v3_quoter_uses_shipped_pool_hash(devnet_chain: Devnet, rpc: DevnetRpc) -> None:
    _, d = devnet_chain
    pool = d.pool("uniswap-v3", "WETH", "USDC", 500)
    weth_in = 10**18
    amount_out, sqrt_after, _ticks, _gas = rpc.view(
        d.v3.quoter_v2,
        "quoteExactInputSingle((address,address,uint256,uint24,uint160))",
        ["uint256", "uint160", "uint32", "uint256"],
        (d.weth, d.tokens["USDC"].address, weth_in, 500, 0),
    )
    # ~3000 USDC (6 decimals) for 1 WETH, within the seeded skew and the fee.
    assert 2_900 * 10**6 < amount_out < 3_100 * 10**6
    assert sqrt_after != d.v3_sqrt_price_x96[pool.address]


def test_chain_snapshot_reverts(chain_snapshot: Devnet, rpc: DevnetRpc) -> None:
    _, d = chain_snapshot
    receipt = rpc.transact(d.deployer, d.weth, encode_call("deposit()"), value=5)
    assert int(receipt["status"], 16) == 1
