"""PoolStore rules without a node: ordering, repeats, removed logs, rollback and its bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mevstack.market.base import PoolInfo
from mevstack.market.errors import RollbackTooDeep, StaleUpdate
from mevstack.market.pools import KINDS, V2PoolState, V3PoolState
from mevstack.market.pools.uniswap_v2 import SYNC
from mevstack.market.pools.uniswap_v3 import BURN, MINT, SWAP
from mevstack.market.registry import has_min_liquidity
from mevstack.market.state import PoolStore
from mevstack.market.uniswap_v3.tick_bitmap import next_initialized_tick_within_one_word

PAIR = "0x00000000000000000000000000000000000000A1"
POOL = "0x00000000000000000000000000000000000000B2"
T0 = "0x0000000000000000000000000000000000000001"
T1 = "0x0000000000000000000000000000000000000002"


def word(value: int) -> str:
    return format(value & (2**256 - 1), "064x")


def sync_log(r0: int, r1: int, index: int = 0, address: str = PAIR) -> dict[str, object]:
    return {
        "address": address.lower(),
        "topics": [SYNC],
        "data": "0x" + word(r0) + word(r1),
        "logIndex": hex(index),
        "removed": False,
    }


def position_log(topic: str, lower: int, upper: int, amount: int, index: int) -> dict[str, object]:
    data = word(amount) + word(0) + word(0)
    if topic == MINT:
        data = word(0) + data
    return {
        "address": POOL.lower(),
        "topics": [topic, "0x" + word(0), "0x" + word(lower), "0x" + word(upper)],
        "data": "0x" + data,
        "logIndex": hex(index),
    }


def v2_store(block: int = 10) -> PoolStore:
    store = PoolStore(KINDS, max_history=4)
    store.set_head(block, "0xhead")
    info = PoolInfo("uniswap-v2", "uniswap_v2", PAIR, T0, T1, 30, None, 0)
    store.put(info, V2PoolState(PAIR, "uniswap-v2", T0, T1, 30, 1000, 2000, block))
    return store


def reserves(store: PoolStore) -> tuple[int, int]:
    state = store.get(PAIR)
    assert isinstance(state, V2PoolState)
    return state.reserve0, state.reserve1


def test_logs_apply_in_log_index_order_and_stamp_the_block() -> None:
    store = v2_store()
    changed = store.apply_block(11, "0xb11", [sync_log(7, 8, index=5), sync_log(5, 6, index=2)])
    assert changed == {PAIR.lower()}
    assert reserves(store) == (7, 8)
    state = store.get(PAIR)
    assert state is not None and state.block_number == 11


def test_older_blocks_are_refused_and_a_repeat_changes_nothing() -> None:
    store = v2_store()
    store.apply_block(11, "0xb11", [sync_log(5, 6)])
    assert store.apply_block(11, "0xb11", [sync_log(9, 9)]) == set()
    assert reserves(store) == (5, 6)
    with pytest.raises(StaleUpdate):
        store.apply_block(11, "0xother", [sync_log(9, 9)])
    with pytest.raises(StaleUpdate):
        store.apply_block(10, "0xb10", [])


def test_removed_logs_and_unknown_pools_are_ignored() -> None:
    store = v2_store()
    removed = {**sync_log(1, 1), "removed": True}
    stranger = sync_log(3, 3, address="0x00000000000000000000000000000000000000C3")
    assert store.apply_block(11, "0xb11", [removed, stranger]) == set()
    assert reserves(store) == (1000, 2000)


def test_a_pool_read_after_the_log_keeps_its_state() -> None:
    store = v2_store(block=12)
    store.set_head(10, "0xb10")  # the head lags the pool's own read
    store.apply_block(11, "0xb11", [sync_log(1, 1)])
    assert reserves(store) == (1000, 2000)


def test_rollback_restores_exactly_and_is_bounded() -> None:
    store = v2_store()
    snapshots = {10: reserves(store)}
    for block in range(11, 17):
        store.apply_block(block, f"0xb{block}", [sync_log(block, block * 2)])
        snapshots[block] = reserves(store)
    store.rollback(14)
    assert reserves(store) == snapshots[14]
    assert store.head == (14, "0xb14")
    with pytest.raises(RollbackTooDeep):
        store.rollback(10)  # the history keeps 4 blocks: 13..16, so 12 is the floor
    store.rollback(12)
    assert reserves(store) == snapshots[12]
    store.apply_block(13, "0xnew13", [sync_log(1, 2)])
    assert reserves(store) == (1, 2)


def test_rollback_removes_pools_added_in_dropped_blocks() -> None:
    store = v2_store()
    store.apply_block(11, "0xb11", [])
    info = PoolInfo("uniswap-v2", "uniswap_v2", POOL, T0, T1, 30, None, 11)
    store.put(info, V2PoolState(POOL, "uniswap-v2", T0, T1, 30, 1, 1, 11))
    assert len(store) == 2
    store.rollback(10)
    assert len(store) == 1 and store.get(POOL) is None


def v3_store() -> PoolStore:
    store = PoolStore(KINDS)
    store.set_head(1, "0xb1")
    info = PoolInfo("uniswap-v3", "uniswap_v3", POOL, T0, T1, 3000, 60, 0)
    state = V3PoolState(POOL, "uniswap-v3", T0, T1, 3000, 60, 2**96, 0, 0, {}, {}, {}, 1)
    store.put(info, state)
    return store


def test_v3_mint_and_burn_flip_ticks_and_in_range_liquidity() -> None:
    store = v3_store()
    store.apply_block(
        2, "0xb2", [position_log(MINT, -120, 60, 500, 0), position_log(MINT, 60, 600, 7, 1)]
    )
    state = store.get(POOL)
    assert isinstance(state, V3PoolState)
    assert state.liquidity == 500
    assert dict(state.liquidity_net) == {-120: 500, 60: -493, 600: -7}
    assert dict(state.liquidity_gross) == {-120: 500, 60: 507, 600: 7}
    assert next_initialized_tick_within_one_word(state.bitmap, 0, 60, False) == (60, True)
    store.apply_block(3, "0xb3", [position_log(BURN, -120, 60, 500, 0)])
    state = store.get(POOL)
    assert isinstance(state, V3PoolState)
    assert state.liquidity == 0
    assert dict(state.liquidity_net) == {60: 7, 600: -7}
    assert next_initialized_tick_within_one_word(state.bitmap, -1, 60, True) == (-15360, False)
    store.rollback(2)
    restored = store.get(POOL)
    assert isinstance(restored, V3PoolState) and restored.liquidity == 500


def test_v3_swap_log_sets_price_tick_and_liquidity() -> None:
    store = v3_store()
    data = word(5) + word(-4) + word(2**96 + 12345) + word(777) + word(-1)
    log = {
        "address": POOL.lower(),
        "topics": [SWAP, "0x" + word(0), "0x" + word(0)],
        "data": "0x" + data,
        "logIndex": "0x0",
    }
    store.apply_block(2, "0xb2", [log])
    state = store.get(POOL)
    assert isinstance(state, V3PoolState)
    assert (state.sqrt_price_x96, state.tick, state.liquidity) == (2**96 + 12345, -1, 777)


def test_min_liquidity_filter() -> None:
    state = V2PoolState(PAIR, "uniswap-v2", T0, T1, 30, 1000, 2000, 1)
    assert has_min_liquidity(state, {})
    assert has_min_liquidity(state, {T1: 2000})
    assert not has_min_liquidity(state, {T1: 2001})
    assert not has_min_liquidity(state, {"0x0000000000000000000000000000000000000009": 1})


def test_dex_spec_from_config() -> None:
    from mevstack.config import DexConfig
    from mevstack.market.base import DexSpec

    factory = "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"
    v2 = DexSpec.from_config(
        DexConfig(name="uniswap-v2", kind="uniswap_v2", factory=factory, fee_bps=25)
    )
    assert (v2.kind, v2.fee_bps, v2.init_code_hash) == ("uniswap_v2", 25, None)
    v3 = DexSpec.from_config(DexConfig(name="uniswap-v3", kind="uniswap_v3", factory=factory))
    assert v3.kind == "uniswap_v3" and v3.expected_address(T0, T1, 500) is None


def test_known_create2_addresses() -> None:
    """Mainnet facts: the Uniswap V2 USDC/WETH pair and the V3 USDC/WETH 0.05 % pool."""
    from mevstack.market.base import DexSpec

    usdc = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
    weth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    v2 = DexSpec(
        "uniswap-v2",
        "uniswap_v2",
        "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f",
        30,
        "0x96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f",
    )
    assert v2.expected_address(usdc, weth, 30) == "0xB4e16d0168e52d35CaCD2c6185b44281Ec28C9Dc"
    v3 = DexSpec(
        "uniswap-v3",
        "uniswap_v3",
        "0x1F98431c8aD98523631AE4a59f267346ea31F984",
        0,
        "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54",
    )
    assert v3.expected_address(usdc, weth, 500) == "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"


async def test_feed_refuses_a_dropped_stream() -> None:
    from mevstack.chain.heads import Rollback
    from mevstack.market.feed import apply_item
    from mevstack.market.registry import PoolRegistry

    registry = PoolRegistry(_NoNode(), [])
    with pytest.raises(RollbackTooDeep):
        await apply_item(registry, v2_store(), Rollback(to_block=-1, from_block=10))


class _NoNode:
    """Stands for a node that must not be asked anything in this test."""

    async def request(self, method: str, params: list[object]) -> object:
        raise AssertionError(f"unexpected call {method}")

    async def batch(self, calls: list[tuple[str, list[object]]]) -> list[object]:
        raise AssertionError("unexpected batch")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_checksum_matches_eip55(raw: bytes) -> None:
    from eth_utils.address import to_checksum_address

    from mevstack.market.abi import checksum

    assert checksum(raw.hex()) == to_checksum_address("0x" + raw.hex())
