"""The unsafe-token round trip on real V2 pairs: honest tokens pass, a taxed token is caught."""

from __future__ import annotations

from typing import Any

import vyper

from mevstack.devnet.rpc import encode_call
from mevstack.execution.roundtrip import round_trip_token_check
from mevstack.execution.simulate import next_block_context
from tests.execution.world import World

WEI = 10**18

# A token that burns 1 % of every transfer (the classic fee-on-transfer token).
TAXED_TOKEN = """
# pragma version 0.4.3
balanceOf: public(HashMap[address, uint256])
totalSupply: public(uint256)

@deploy
def __init__(supply: uint256):
    self.balanceOf[msg.sender] = supply
    self.totalSupply = supply

@external
def transfer(to: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount - amount // 100
    self.totalSupply -= amount // 100
    return True
"""


async def test_plain_and_usdt_style_tokens_are_safe(world: World) -> None:
    w = world
    context = await next_block_context(w.rpc, block_time=1)
    for symbol in ("USDC", "USDT", "DAI"):
        pair = w.d.pool("uniswap-v2", "WETH", symbol).address
        result = await round_trip_token_check(
            w.rpc,
            pair=pair,
            token=w.token(symbol),
            wrapped_native=w.d.weth,
            amount_in=WEI,
            context=context,
        )
        assert result.safe, result.reason
        assert result.bought_received == result.bought_expected > 0
        assert result.sold_arrived == result.bought_received
        # Two 0.3 % fees: the round trip returns a little less than it put in.
        assert 0.99 * WEI < result.base_received < WEI


async def test_fee_on_transfer_token_is_unsafe(world: World) -> None:
    w = world
    out = vyper.compile_code(TAXED_TOKEN, output_formats=["bytecode"])
    code = bytes.fromhex(out["bytecode"][2:]) + (10**30).to_bytes(32, "big")
    taxed = w.send_from_deployer_create(code)
    factory = w.d.v2[0].factory
    w.send_from_deployer(factory, encode_call("createPair(address,address)", taxed, w.d.weth))
    pair = w.sync.view(factory, "getPair(address,address)", ["address"], taxed, w.d.weth)
    w.send_from_deployer(taxed, encode_call("transfer(address,uint256)", pair, 10**24))
    w.send_from_deployer(w.d.weth, encode_call("deposit()"), value=100 * WEI)
    w.send_from_deployer(w.d.weth, encode_call("transfer(address,uint256)", pair, 100 * WEI))
    w.send_from_deployer(pair, encode_call("mint(address)", w.d.deployer))

    context = await next_block_context(w.rpc, block_time=1)
    result = await round_trip_token_check(
        w.rpc, pair=pair, token=taxed, wrapped_native=w.d.weth, amount_in=WEI, context=context
    )
    assert not result.safe
    # The pair pays out through the taxed transfer: the buyer gets 1 % less than the math.
    assert result.bought_received == result.bought_expected - result.bought_expected // 100
    assert result.reason == (
        f"buying delivered {result.bought_received} instead of {result.bought_expected}"
    )


class _TradeAfterReserves:
    """The node, with one real trade on the pair mined right after the check has read the
    pair's reserves: the race a busy chain runs at every block."""

    def __init__(self, world: World, pair: str, symbol: str) -> None:
        self.world, self.pair, self.symbol = world, pair.lower(), symbol
        self.traded = False

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        return await self.world.rpc.batch(calls)

    async def request(self, method: str, params: list[Any]) -> Any:
        answer = await self.world.rpc.request(method, params)
        call = params[0] if method == "eth_call" else None
        if (
            not self.traded
            and isinstance(call, dict)
            and str(call.get("to", "")).lower() == self.pair
            and call.get("data") == "0x0902f1ac"  # getReserves
        ):
            self.traded = True
            self.world.send_from_deployer(
                next(d.router for d in self.world.d.v2 if d.name == "uniswap-v2"),
                encode_call(
                    "swapExactETHForTokens(uint256,address[],address,uint256)",
                    0,
                    [self.world.d.weth, self.world.token(self.symbol)],
                    self.world.d.deployer,
                    2**40,
                ),
                value=5 * WEI,
            )
        return answer


async def test_a_block_landing_during_the_check_does_not_make_a_sound_token_unsafe(
    world: World,
) -> None:
    """Reserves and both simulations are pinned to the block the check started from: a trade
    on the pair mined in between changes nothing (read at "latest", the exact buy reverted
    with UniswapV2: K and USDC was declared unsafe)."""
    w = world
    pair = w.d.pool("uniswap-v2", "WETH", "USDC").address
    node = _TradeAfterReserves(w, pair, "USDC")
    context = await next_block_context(w.rpc, block_time=1)
    result = await round_trip_token_check(
        node,
        pair=pair,
        token=w.token("USDC"),
        wrapped_native=w.d.weth,
        amount_in=WEI,
        context=context,
    )
    assert node.traded, "the trade was mined during the check"
    assert result.safe, result.reason
