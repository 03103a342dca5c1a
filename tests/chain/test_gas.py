"""GasOracle on real anvil nodes: next base fee to the wei, fee history, L1 fee models."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from eth_abi.abi import encode

from mevstack.chain.basefee import OP_CANYON_PARAMS, eip1559_next_base_fee
from mevstack.chain.gas import ArbitrumPrices, GasOracle, parent_header, priority_percentiles
from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.opstack import L1BlockValues, install_op_stack_fee_contracts
from mevstack.devnet.rpc import DevnetRpc
from mevstack.events import EventName
from tests.chain.chaindriver import Driver


@pytest.fixture(scope="module")
def op_devnet() -> Iterator[Anvil]:
    """An "optimism" devnet chain (id 10) on anvil, blocks mined on demand, small gas limit.

    The 100k gas limit puts the EIP-1559 target at 50k gas, so one to four plain transfers per
    block swing the base fee both ways.
    """
    with Anvil(chain_id=10, extra_args=["--no-mining", "--gas-limit", "100000"]) as node:
        yield node


@pytest.fixture
async def op_client(op_devnet: Anvil) -> AsyncIterator[RpcClient]:
    client = RpcClient(op_devnet.rpc_url, timeout=5.0)
    yield client
    await client.aclose()


async def test_next_base_fee_matches_what_anvil_mines(
    op_devnet: Anvil, op_client: RpcClient
) -> None:
    driver = Driver(op_devnet.rpc_url)
    oracle = GasOracle("optimism-dev", op_client, chain_id=10, l1_model="none")
    await oracle.detect()
    assert oracle.rule is not None and oracle.rule.kind == "ethereum"  # anvil, despite id 10
    predictions: list[tuple[int, int]] = []
    op_rule_differs = False
    account = driver.account
    # anvil gives block 1 the genesis base fee as it is (its fork-activation block); from there
    # on every block follows the rule
    driver.rpc("evm_mine", [])
    for transfers in (0, 1, 3, 4, 2, 0, 4, 4, 1):
        quote = await oracle.quote()
        for _ in range(transfers):
            driver.rpc("eth_sendTransaction", [{"from": account, "to": account, "value": "0x1"}])
        driver.rpc("evm_mine", [])
        child = driver.rpc("eth_getBlockByNumber", ["latest", False])
        assert int(child["number"], 16) == quote.block_number + 1
        assert quote.next_base_fee_wei is not None
        predictions.append((quote.next_base_fee_wei, int(child["baseFeePerGas"], 16)))
        parent = parent_header(driver.rpc("eth_getBlockByNumber", [hex(quote.block_number), False]))
        op = eip1559_next_base_fee(
            parent.base_fee, parent.gas_used, parent.gas_limit, OP_CANYON_PARAMS
        )
        op_rule_differs |= op != quote.next_base_fee_wei
    driver.close()
    assert all(predicted == mined for predicted, mined in predictions), predictions
    fees = [mined for _, mined in predictions]
    steps = [b - a for a, b in itertools.pairwise(fees)]
    assert min(steps) < 0 < max(steps)  # the fee went both down and up
    assert op_rule_differs  # the chain id's own rule would have mispredicted anvil


async def test_priority_fee_percentiles_from_fee_history(
    op_devnet: Anvil, op_client: RpcClient
) -> None:
    driver = Driver(op_devnet.rpc_url)
    account = driver.account
    base = int(driver.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    for tip in (1, 2, 3):
        for _ in range(2):
            driver.rpc(
                "eth_sendTransaction",
                [
                    {
                        "from": account,
                        "to": account,
                        "value": "0x1",
                        "maxPriorityFeePerGas": hex(tip * 10**8),
                        "maxFeePerGas": hex(4 * base + tip * 10**8),
                    }
                ],
            )
        driver.rpc("evm_mine", [])
    driver.rpc("evm_mine", [])  # one empty block: ignored by the percentiles
    driver.close()
    oracle = GasOracle("optimism-dev", op_client, chain_id=10, window=4, l1_model="none")
    quote = await oracle.quote()
    assert (quote.priority_fee_p10, quote.priority_fee_p50, quote.priority_fee_p90) == (
        2 * 10**8,
        2 * 10**8,
        2 * 10**8,
    )  # median over blocks of 1, 2, 3 gwei/10 tips
    history = {
        "reward": [["0x1", "0x2", "0x3"], ["0x0", "0x0", "0x0"], ["0x5", "0x6", "0x9"]],
        "gasUsedRatio": [0.5, 0.0, 0.9],
    }
    assert priority_percentiles(history) == (1, 2, 3)
    assert priority_percentiles({"reward": [], "gasUsedRatio": []}) == (0, 0, 0)


def _fjord_upper_bound(size: int, v: L1BlockValues) -> int:
    """GasPriceOracle's Fjord upper bound, written out from the protocol's published formula."""
    tx_size = size + 68
    flz = tx_size + tx_size // 255 + 16
    estimated = max(-42_585_600 + 836_500 * flz, 100 * 10**6)
    fee_scaled = v.base_fee_scalar * 16 * v.basefee + v.blob_base_fee_scalar * v.blob_base_fee
    return estimated * fee_scaled // 10**12


@pytest.fixture(scope="module")
def op_stack_chain() -> Iterator[tuple[Anvil, L1BlockValues]]:
    values = L1BlockValues()
    with Anvil(chain_id=10) as node, DevnetRpc(node.rpc_url) as rpc:
        install_op_stack_fee_contracts(rpc, values)
        yield node, values


async def test_op_stack_l1_fee_from_the_real_gas_price_oracle(
    op_stack_chain: tuple[Anvil, L1BlockValues],
) -> None:
    node, values = op_stack_chain
    published: list[tuple[EventName, str | None, dict[str, Any]]] = []

    async def publish(name: EventName, chain: str | None, data: dict[str, Any]) -> None:
        published.append((name, chain, data))

    async with RpcClient(node.rpc_url) as client:
        oracle = GasOracle("optimism", client, chain_id=10, publish=publish)
        quote = await oracle.quote()
        assert oracle.model == "op_stack" and oracle.fjord
        assert quote.l1_data_fee_wei_per_kb == _fjord_upper_bound(1024, values)
        assert quote.l1_data_fee_wei_per_kb > 0
        assert not quote.l1_fee_included_in_gas
        # an exact transaction: compressible bytes cost less than the incompressible bound
        compressible = await oracle.l1_fee(b"\x02" + b"\x00" * 1023)
        assert compressible is not None and 0 < compressible < quote.l1_data_fee_wei_per_kb
    assert published and published[0][0] is EventName.GAS_PRICE and published[0][1] == "optimism"
    data = published[0][2]
    assert data["l1_fee_model"] == "op_stack"
    assert data["l1_data_fee_wei_per_kb"] == str(_fjord_upper_bound(1024, values))
    assert set(data) >= {
        "chain",
        "block_number",
        "base_fee_wei",
        "next_base_fee_wei",
        "priority_fee_wei",
        "l1_fee_model",
        "l1_data_fee_wei_per_kb",
        "updated_at",
    }
    assert set(data["priority_fee_wei"]) == {"p10", "p50", "p90"}
    assert isinstance(data["base_fee_wei"], str)


async def test_without_fee_contracts_the_model_is_none_with_a_reason(anvil: Anvil) -> None:
    async with RpcClient(anvil.rpc_url) as client:
        oracle = GasOracle("dev", client, chain_id=31337)
        quote = await oracle.quote()
        assert quote.l1_fee_model == "none" and quote.l1_data_fee_wei_per_kb is None
        assert quote.l1_fee_reason is not None
        assert "0x420000000000000000000000000000000000000F" in quote.l1_fee_reason
        assert "0x000000000000000000000000000000000000006C" in quote.l1_fee_reason
        assert await oracle.l1_fee(b"\x01\x02") is None
        assert quote.to_json()["l1_data_fee_wei_per_kb"] is None


# Arbitrum One, ArbGasInfo.getPricesInWei() as answered by arb1.arbitrum.io (recorded in a
# public transcript): perL2Tx, per L1 calldata byte, per storage allocation, per ArbGas base,
# per ArbGas congestion, per ArbGas total.
ARBITRUM_ONE_PRICES = (3_762_879_680, 26_877_712, 402_280_000_000, 20_000_000, 114_000, 20_114_000)


def test_arbitrum_prices_decode_from_recorded_answer() -> None:
    answer = encode(["uint256"] * 6, list(ARBITRUM_ONE_PRICES))
    prices = ArbitrumPrices.decode(answer)
    assert prices.per_l1_calldata_byte == 26_877_712
    # ArbOS prices a "simple" L2 tx as 140 calldata bytes: the answer is self-consistent
    assert prices.per_l2_tx == prices.per_l1_calldata_byte * 140
    assert prices.per_arb_gas_base + prices.per_arb_gas_congestion == prices.per_arb_gas_total
