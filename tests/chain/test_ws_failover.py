"""WsClient over several WebSocket URLs on real anvils: failover, chain-id refusal, preference.

Nodes are real anvils; where a socket must be down while its node keeps serving HTTP, or must
flap, the path to it goes through :class:`tests.chain.proxy.TcpProxy`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from mevstack.chain.endpoints import EndpointPool
from mevstack.chain.errors import RpcTimeout
from mevstack.chain.heads import HeadStream, LogFilter, NewBlock, StreamItem
from mevstack.chain.rpc import RpcClient
from mevstack.chain.ws import RESUBSCRIBED, Subscription, WsClient
from mevstack.devnet.anvil import Anvil
from tests.chain.chaindriver import Driver
from tests.chain.proxy import TcpProxy
from tests.waiting import wait_until

GENESIS_TS = 1_700_000_000


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items: list[Any] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def _next_head(sub: Subscription, within: float = 5.0) -> dict[str, Any]:
    """The next head notification, past any reconnect markers."""
    async with asyncio.timeout(within):
        while (item := await sub.get()) is RESUBSCRIBED:
            pass
    assert isinstance(item, dict)
    return item


async def test_serving_node_killed_mid_stream_next_socket_carries_on() -> None:
    """ws = [A, B] on two identically driven anvils; A dies mid-stream.

    Polling is a minute away, so every block below reaches the stream through a socket: A's
    until it dies, then B's.  Each block arrives exactly once, none is missed, and the
    pending-transaction subscription resumes on B.
    """
    args = ["--no-mining", "--timestamp", str(GENESIS_TS)]
    with Anvil(chain_id=31337, extra_args=args) as a, Anvil(chain_id=31337, extra_args=args) as b:
        drive_a, drive_b = Driver(a.rpc_url), Driver(b.rpc_url)
        weths = {d.deploy_weth(mine_at=GENESIS_TS + 1) for d in (drive_b, drive_a)}
        assert len(weths) == 1
        weth = weths.pop()
        pool = EndpointPool("dev", 31337, [a.rpc_url, b.rpc_url], block_time=1.0)
        await pool.start()
        ws = await WsClient([a.ws_url, b.ws_url], chain_id=31337, timeout=2.0).start()
        stream = HeadStream("dev", pool, ws=ws, poll_interval=60.0, start_block=2)
        consumer = stream.register(LogFilter.of([weth]))
        pending = await ws.subscribe("newPendingTransactions")
        await stream.start()
        # The socket's node mines last, so the block it announces is on every live node.
        live = [drive_b, drive_a]
        items: list[StreamItem] = []
        try:
            await ws.wait_connected()
            assert ws.endpoint is ws.endpoints[0]
            for i in range(2, 22):
                for driver in live:
                    driver.deposit(weth, value=i, mine_at=GENESIS_TS + i)
                if i == 9:
                    a.kill()
                    live = [drive_b]
                await wait_until(
                    lambda n=i - 1: consumer.queue.qsize() >= n,  # type: ignore[misc]
                    within=10.0,
                    what=f"block {i}",
                )
            items = _drain(consumer.queue)
            assert ws.endpoint is ws.endpoints[1] and ws.connects == 2
            assert ws.endpoints[0].strikes >= 1 and ws.endpoints[1].notifications >= 12
            # a transaction sent to B after the kill reaches the pending subscription
            tx = drive_b.rpc(
                "eth_sendTransaction",
                [{"from": drive_b.account, "to": weth, "value": "0x1", "data": "0xd0e30db0"}],
            )
            seen: list[Any] = []
            async with asyncio.timeout(5.0):
                while not seen or seen[-1] != tx:
                    seen.append(await pending.get())
            survivor_hashes = {n: drive_b.hash_at(n) for n in range(2, 22)}
        finally:
            await stream.aclose()
            await ws.aclose()
            await pool.aclose()
            drive_a.close()
            drive_b.close()
        assert all(isinstance(item, NewBlock) for item in items)
        numbers = [item.header.number for item in items if isinstance(item, NewBlock)]
        assert numbers == list(range(2, 22))
        assert {
            item.header.number: item.header.hash for item in items if isinstance(item, NewBlock)
        } == survivor_hashes
        assert [int(item.logs[0]["data"], 16) for item in items if isinstance(item, NewBlock)] == (
            list(range(2, 22))
        )
        assert seen.count(RESUBSCRIBED) == 1 and seen.index(RESUBSCRIBED) < len(seen) - 1


async def test_socket_of_another_chain_is_never_used(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mevstack.chain.ws")
    with (
        Anvil(chain_id=4242, extra_args=["--no-mining"]) as other,
        Anvil(chain_id=31337, extra_args=["--no-mining"]) as right,
    ):
        # credentials in the URL: logs may name this endpoint only redacted
        other_url = other.ws_url.replace("ws://", "ws://ops:s3cret@") + "/?apikey=k3y"
        drive_other, drive_right = Driver(other.rpc_url), Driver(right.rpc_url)
        both = await WsClient([other_url, right.ws_url], chain_id=31337, timeout=2.0).start()
        alone = await WsClient(other_url, chain_id=31337, timeout=0.5).start()
        try:
            heads = await both.subscribe("newHeads")
            lonely = await alone.subscribe("newHeads")
            await both.wait_connected()
            assert both.endpoint is both.endpoints[1]
            refused = both.endpoints[0]
            assert refused.wrong_chain and refused.chain_id == 4242 and refused.connects == 0
            await wait_until(lambda: alone.endpoints[0].wrong_chain, what="the lone refusal")
            # empty blocks differ by their timestamps only (the chain id is not in a header)
            drive_other.rpc("evm_mine", [4_000_000_000])
            drive_right.rpc("evm_mine", [4_000_000_001])
            head = await _next_head(heads)
            assert head["hash"] == drive_right.hash_at(1) != drive_other.hash_at(1)
            assert await both.request("eth_chainId", []) == hex(31337)
            with pytest.raises(RpcTimeout):
                await alone.request("eth_chainId", [])
            # the wrong node mined a block half a second ago: nothing of it reached us
            assert lonely.queue.empty() and not alone.connected.is_set() and alone.connects == 0
        finally:
            await both.aclose()
            await alone.aclose()
            drive_other.close()
            drive_right.close()
    assert "chain id 4242" in caplog.text and "***" in caplog.text
    assert "s3cret" not in caplog.text and "k3y" not in caplog.text


async def test_all_sockets_down_stream_polls_then_sockets_serve_again() -> None:
    """ws = [first, second], both down while the node's HTTP side stays up.

    The stream polls meanwhile; when the second comes back its socket serves, and when the
    preferred first comes back it takes over once its hold is over.  No block missed or doubled.
    """
    with Anvil(chain_id=31337) as node:
        driver = Driver(node.rpc_url)
        weth = driver.deploy_weth()
        first, second = TcpProxy(node.port), TcpProxy(node.port)
        ws = WsClient(
            [first.ws_url, second.ws_url],
            chain_id=31337,
            timeout=1.0,
            max_backoff=0.2,
            stable_after=0.5,
            max_hold=1.0,
        )
        rpc = RpcClient(node.rpc_url, timeout=5.0)
        start = driver.head() + 1
        stream = HeadStream("dev", rpc, ws=ws, poll_interval=0.2, start_block=start)
        consumer = stream.register()
        await ws.start()
        await stream.start()
        try:
            for _ in range(3):
                driver.deposit(weth)
            await wait_until(lambda: consumer.queue.qsize() >= 3, what="3 polled blocks")
            assert ws.connects == 0 and not ws.connected.is_set()
            await wait_until(lambda: all(e.strikes >= 2 for e in ws.endpoints), what="retries")

            await second.up()
            await wait_until(lambda: ws.endpoint is ws.endpoints[1], what="the second socket")
            before = ws.endpoints[1].notifications
            driver.deposit(weth)
            await wait_until(
                lambda: consumer.queue.qsize() >= 4 and ws.endpoints[1].notifications > before,
                what="a head over the second socket",
            )

            await first.up()
            await wait_until(
                lambda: ws.endpoint is ws.endpoints[0], within=10.0, what="the preferred socket"
            )
            await wait_until(lambda: second.open_connections == 0, what="the second released")
            before = ws.endpoints[0].notifications
            driver.deposit(weth)
            await wait_until(
                lambda: consumer.queue.qsize() >= 5 and ws.endpoints[0].notifications > before,
                what="a head over the preferred socket",
            )
            assert ws.connects == 2 and ws.endpoints[1].notifications > 0
            items = _drain(consumer.queue)
        finally:
            await stream.aclose()
            await ws.aclose()
            await rpc.aclose()
            await first.down()
            await second.down()
            driver.close()
        numbers = [item.header.number for item in items if isinstance(item, NewBlock)]
        assert len(items) == len(numbers) == 5 and numbers == list(range(start, start + 5))


async def test_flapping_preferred_socket_does_not_starve_a_healthy_one() -> None:
    """The preferred URL accepts, then drops each connection after 0.3 s.

    Each drop doubles the hold before it may take over again (1 s, then 2 s), and the healthy
    URL serves in between; a client that went straight back would retry every few hundred ms.
    """
    with Anvil(chain_id=31337) as node:
        flappy = await TcpProxy(node.port, cut_after=0.3).up()
        ws = WsClient(
            [flappy.ws_url, node.ws_url],
            chain_id=31337,
            timeout=1.0,
            max_backoff=0.2,
            stable_after=1.0,
            max_hold=30.0,
        )
        heads = await ws.subscribe("newHeads")
        driver = Driver(node.rpc_url)
        await ws.start()
        try:
            await wait_until(
                lambda: len(flappy.accepted) >= 3, within=20.0, what="three flappy connects"
            )
            await wait_until(lambda: ws.endpoint is ws.endpoints[1], what="the healthy socket")
            driver.rpc("evm_mine", [])
            head = await _next_head(heads)
            assert head["hash"] == driver.hash_at(int(head["number"], 16))
        finally:
            await ws.aclose()
            await flappy.down()
            driver.close()
        first, second, third = flappy.accepted[:3]
        slack = 0.05  # event-loop timers may fire within the clock's resolution
        assert second - first >= 0.3 + 1.0 - slack
        assert third - second >= 0.3 + 2.0 - slack
        assert ws.endpoints[1].connects >= 2 and ws.endpoints[0].strikes >= 2
