"""The head/log stream on real anvil: order, exactly-once, logs by hash, reorgs 1..5, failover."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from mevstack.chain.endpoints import EndpointPool
from mevstack.chain.heads import (
    BlockHeader,
    ChainTracker,
    Consumer,
    HeadStream,
    LogFilter,
    NewBlock,
    ReorgTooDeep,
    Rollback,
    StreamItem,
)
from mevstack.chain.rpc import RpcClient
from mevstack.chain.ws import WsClient
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.events import EventName
from tests.chain.chaindriver import DEPOSIT_TOPIC, Driver
from tests.chain.proxy import DelayProxy
from tests.waiting import wait_until


def _header(number: int, tag: str = "a", parent_tag: str | None = None) -> BlockHeader:
    return BlockHeader(
        number=number,
        hash=f"0x{tag}{number:063x}",
        parent_hash=f"0x{parent_tag or tag}{number - 1:063x}",
        timestamp=number,
        gas_used=0,
        gas_limit=30_000_000,
        base_fee=None,
        extra_data="0x",
    )


def test_tracker_links_by_parent_hash_and_rolls_back() -> None:
    tracker = ChainTracker(depth=3)
    for n in range(1, 6):
        tracker.push(_header(n))
    assert tracker.oldest == 3 and tracker.last == _header(5)
    assert tracker.hash_at(4) == _header(4).hash and tracker.hash_at(2) is None
    assert not tracker.extends(_header(6, "b"))  # parent hash from another fork
    assert not tracker.extends(_header(7))  # gap
    with pytest.raises(ValueError):
        tracker.push(_header(6, "b"))
    tracker.rollback(3)
    assert tracker.last == _header(3)
    tracker.push(_header(4, "b", parent_tag="a"))
    assert tracker.hash_at(4) == _header(4, "b").hash


def test_log_filter() -> None:
    entry = {"address": "0xAbC0000000000000000000000000000000000001", "topics": ["0xDEAD"]}
    assert LogFilter().matches(entry)
    assert LogFilter.of(["0xabc0000000000000000000000000000000000001"]).matches(entry)
    assert not LogFilter.of(["0x" + "00" * 20]).matches(entry)
    assert LogFilter.of(None, ["0xdead"]).matches(entry)
    assert not LogFilter.of(None, ["0xbeef"]).matches(entry)
    assert not LogFilter.of(None, ["0xdead"]).matches({"address": "0x", "topics": []})
    two = {"address": "0x1", "topics": ["0xa", "0xb"]}
    assert LogFilter.of(topics=[None, ["0xB"]]).matches(two)
    assert not LogFilter.of(topics=[None, ["0xc"]]).matches(two)
    assert not LogFilter.of(topics=[None, None, ["0xc"]]).matches(two)
    assert LogFilter.of(topics0=["0xa"], topics=[None, ["0xb"]]).matches(two)


def _drain(consumer: Consumer) -> list[StreamItem]:
    items: list[StreamItem] = []
    while not consumer.queue.empty():
        items.append(consumer.queue.get_nowait())
    return items


def _apply(view: dict[int, NewBlock], items: list[StreamItem]) -> None:
    """What a consumer does with the stream: keep blocks, drop everything above a rollback."""
    for item in items:
        if isinstance(item, Rollback):
            for number in [n for n in view if n > item.to_block]:
                del view[number]
        else:
            assert item.header.number not in view, f"block {item.header.number} delivered twice"
            assert not view or item.header.number == max(view) + 1, "out of order"
            view[item.header.number] = item


@pytest.fixture(scope="module")
def reorg_node() -> Iterator[tuple[Anvil, Driver, str]]:
    with Anvil(chain_id=31337) as node:
        driver = Driver(node.rpc_url)
        weth = driver.deploy_weth()
        yield node, driver, weth
        driver.close()


@pytest.fixture
async def client(reorg_node: tuple[Anvil, Driver, str]) -> AsyncIterator[RpcClient]:
    rpc = RpcClient(reorg_node[0].rpc_url, timeout=5.0)
    yield rpc
    await rpc.aclose()


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
async def test_reorg_same_height_rolls_back_to_ancestor(
    reorg_node: tuple[Anvil, Driver, str], client: RpcClient, depth: int
) -> None:
    _, driver, weth = reorg_node
    events: list[tuple[EventName, dict[str, object]]] = []

    async def publish(name: EventName, chain: str | None, data: dict[str, object]) -> None:
        events.append((name, data))

    stream = HeadStream("dev", client, publish=publish)
    mine = stream.register(LogFilter.of([weth]))
    everything = stream.register()
    await stream.sync()
    for _ in range(6):
        driver.deposit(weth)
    assert await stream.sync() == 6
    view: dict[int, NewBlock] = {}
    _apply(view, _drain(mine))
    tip = driver.head()
    assert max(view) == tip and all(len(view[n].logs) == 1 for n in range(tip - 5, tip + 1))
    assert view[tip].logs[0]["topics"][0] == DEPOSIT_TOPIC
    old_hashes = {n: view[n].header.hash for n in view}

    # the replacement fork carries one deposit in its second block (when it has one)
    slot = min(1, depth - 1)
    tx = {"from": driver.account, "to": weth, "value": "0x7", "data": "0xd0e30db0"}
    driver.rpc("anvil_reorg", [depth, [[tx, slot]]])
    assert driver.head() == tip
    assert await stream.sync() == depth
    items = _drain(mine)
    assert items[0] == Rollback(to_block=tip - depth, from_block=tip)
    assert [i.header.number for i in items[1:] if isinstance(i, NewBlock)] == list(
        range(tip - depth + 1, tip + 1)
    )
    _apply(view, items)
    for n in range(tip - 6, tip + 1):
        assert view[n].header.hash == driver.hash_at(n)
    for n in range(tip - depth + 1, tip + 1):
        assert view[n].header.hash != old_hashes[n]
        expected_logs = 1 if n == tip - depth + 1 + slot else 0
        assert len(view[n].logs) == expected_logs
    assert len(_drain(everything)) == len(items) + 7
    reorgs = [d for name, d in events if name is EventName.CHAIN_REORG]
    assert reorgs == [{"from_block": tip, "to_block": tip - depth, "depth": depth}]
    assert sum(1 for name, _ in events if name is EventName.BLOCK_NEW) == 7 + depth


async def test_rollback_then_longer_fork_is_found_by_parent_hash(
    reorg_node: tuple[Anvil, Driver, str], client: RpcClient
) -> None:
    _, driver, weth = reorg_node
    stream = HeadStream("dev", client)
    consumer = stream.register()
    await stream.sync()
    for _ in range(3):
        driver.deposit(weth)
    await stream.sync()
    tip = driver.head()
    driver.rpc("anvil_rollback", [2])
    for _ in range(4):
        driver.deposit(weth, value=3)
    assert await stream.sync() == 4
    view: dict[int, NewBlock] = {}
    items = _drain(consumer)
    _apply(view, items)
    assert Rollback(to_block=tip - 2, from_block=tip) in items
    assert max(view) == tip + 2
    for n in range(tip - 3, tip + 3):
        assert view[n].header.hash == driver.hash_at(n)


async def test_stream_loop_over_websocket(
    reorg_node: tuple[Anvil, Driver, str], client: RpcClient
) -> None:
    node, driver, weth = reorg_node
    ws = await WsClient(node.ws_url).start()
    start = driver.head() + 1
    stream = HeadStream("dev", client, ws=ws, poll_interval=5.0, start_block=start)
    consumer = stream.register(LogFilter.of(None, [DEPOSIT_TOPIC]))
    await stream.start()
    try:
        await ws.wait_connected()
        began = time.monotonic()
        for _ in range(5):
            driver.deposit(weth)
        await wait_until(lambda: consumer.queue.qsize() >= 5, within=5.0, what="5 blocks")
        # pushed by newHeads, well before the 5 s safety-net poll
        assert time.monotonic() - began < 4.0
        items = _drain(consumer)
        assert [i.header.number for i in items if isinstance(i, NewBlock)] == list(
            range(start, start + 5)
        )
        assert all(isinstance(i, NewBlock) and len(i.logs) == 1 for i in items)
    finally:
        await stream.aclose()
        await ws.aclose()


async def test_a_pushed_head_costs_one_round_trip(reorg_node: tuple[Anvil, Driver, str]) -> None:
    """With newHeads, the header the notification carries is delivered as it is: per block the
    node is asked for its logs only (no ``latest`` head, no header again)."""
    node, driver, weth = reorg_node
    proxy = await DelayProxy(node.rpc_url).start()
    client = RpcClient(proxy.url, timeout=5.0)
    ws = await WsClient(node.ws_url).start()
    start = driver.head() + 1
    stream = HeadStream("dev", client, ws=ws, poll_interval=5.0, start_block=start)
    consumer = stream.register(LogFilter.of(None, [DEPOSIT_TOPIC]))
    await stream.start()
    try:
        await ws.wait_connected()
        driver.deposit(weth)  # the first block goes through the full sync (nothing delivered yet)
        await wait_until(lambda: consumer.queue.qsize() >= 1, within=5.0, what="the first block")
        before = proxy.methods.copy()
        for k in range(2, 6):
            driver.deposit(weth)
            await wait_until(lambda k=k: consumer.queue.qsize() >= k, within=5.0, what="a block")
        asked = proxy.methods - before
        assert asked == {"eth_getLogs": 4}, asked
        items = _drain(consumer)
        assert [i.header.number for i in items if isinstance(i, NewBlock)] == list(
            range(start, start + 5)
        )
        assert all(isinstance(i, NewBlock) and len(i.logs) == 1 for i in items)
    finally:
        await stream.aclose()
        await ws.aclose()
        await client.aclose()
        await proxy.stop()


GENESIS_TS = 1_700_000_000


async def test_endpoint_killed_mid_stream_no_block_missed_or_doubled() -> None:
    """Two anvils driven identically (same genesis, same txs, same block timestamps).

    Real anvils cannot share one chain, and ``--fork-url`` would only copy state at the fork
    point, so both nodes are fed the same transactions and mined with the same explicit
    timestamps: they produce the same block hashes, as two nodes of one network would.
    """
    args = ["--no-mining", "--timestamp", str(GENESIS_TS)]
    with Anvil(chain_id=31337, extra_args=args) as n1, Anvil(chain_id=31337, extra_args=args) as n2:
        drivers = [Driver(n1.rpc_url), Driver(n2.rpc_url)]
        weths = {d.deploy_weth(mine_at=GENESIS_TS + 1) for d in drivers}
        assert len(weths) == 1
        weth = weths.pop()
        assert drivers[0].hash_at(1) == drivers[1].hash_at(1)
        pool = EndpointPool("dev", 31337, [n1.rpc_url, n2.rpc_url], block_time=1.0)
        await pool.start()
        stream = HeadStream("dev", pool, poll_interval=0.05, start_block=2)
        consumer = stream.register(LogFilter.of([weth]))
        await stream.start()
        nodes = {n1.rpc_url: n1, n2.rpc_url: n2}
        live = list(drivers)
        view: dict[int, NewBlock] = {}
        items: list[StreamItem] = []
        try:
            for i in range(2, 22):
                for driver in live:
                    driver.deposit(weth, value=i, mine_at=GENESIS_TS + i)
                if i == 9:
                    await wait_until(lambda: consumer.queue.qsize() >= 8, within=10.0)
                    primary = pool.primary
                    assert primary is not None
                    nodes[primary.url].kill()
                    live = [d for d in live if d.url != primary.url]
            await wait_until(lambda: consumer.queue.qsize() >= 20, within=15.0, what="20 blocks")
            items = _drain(consumer)
            survivor_hashes = {n: live[0].hash_at(n) for n in range(2, 22)}
        finally:
            await stream.aclose()
            await pool.aclose()
            for driver in drivers:
                driver.close()
        assert not any(isinstance(i, Rollback) for i in items)
        _apply(view, items)
        assert sorted(view) == list(range(2, 22))
        assert {n: b.header.hash for n, b in view.items()} == survivor_hashes
        assert [int(view[n].logs[0]["data"], 16) for n in sorted(view)] == list(range(2, 22))
        assert all(len(block.logs) == 1 for block in view.values())


async def test_reorg_deeper_than_tracked_depth_is_reported(
    reorg_node: tuple[Anvil, Driver, str], client: RpcClient
) -> None:
    _, driver, weth = reorg_node
    stream = HeadStream("dev", client, depth=3)
    consumer = stream.register()
    await stream.sync()
    for _ in range(4):
        driver.deposit(weth)
    await stream.sync()
    driver.rpc("anvil_reorg", [5, []])
    with pytest.raises(ReorgTooDeep):
        await stream.sync()
    await stream._restart()
    items = _drain(consumer)
    assert items[-1] == Rollback(to_block=-1, from_block=driver.head())
    assert await stream.sync() == 1  # starts over at the node's head


async def test_stream_polls_while_the_websocket_is_down(
    reorg_node: tuple[Anvil, Driver, str], client: RpcClient
) -> None:
    _, driver, weth = reorg_node
    dead_ws = await WsClient(f"ws://127.0.0.1:{free_port()}", timeout=0.2).start()
    start = driver.head() + 1
    stream = HeadStream("dev", client, ws=dead_ws, poll_interval=0.05, start_block=start)
    consumer = stream.register()
    await stream.start()
    try:
        for _ in range(3):
            driver.deposit(weth)
        await wait_until(lambda: consumer.queue.qsize() >= 3, within=5.0, what="3 polled blocks")
        numbers = [i.header.number for i in _drain(consumer) if isinstance(i, NewBlock)]
        assert numbers[:3] == [start, start + 1, start + 2]
    finally:
        await stream.aclose()
        await dead_ws.aclose()
