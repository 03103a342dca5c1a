"""One chain's whole chain layer wired from its ``[[chains]]`` config: what the engine starts.

``ChainServices`` owns the endpoint pool (reads, fan-out sends), the node monitor
(``node.status``), the head/log stream (``block.new``, ``chain.reorg``, consumer queues) and the
gas oracle (``gas.price``).  With ``ws`` URLs configured the stream is woken by ``newHeads`` over
one WebSocket client that uses every one of them, failing over between them and refusing any
whose node reports another chain id (and polls while none is up); without, it polls at a quarter
of the block time (at most 1 s).  Everything publishes through one
``async def publish(event, chain, data)``.
"""

from __future__ import annotations

from mevstack.chain.endpoints import EndpointPool
from mevstack.chain.gas import GasOracle, Publisher
from mevstack.chain.heads import HeadStream
from mevstack.chain.monitor import NodeMonitor
from mevstack.chain.ws import WsClient
from mevstack.config import ChainConfig


class ChainServices:
    def __init__(self, config: ChainConfig, publish: Publisher | None = None) -> None:
        self.config = config
        poll = min(config.block_time / 4, 1.0)
        self.pool = EndpointPool(
            config.name, config.chain_id, [str(u) for u in config.rpc], block_time=config.block_time
        )
        self.monitor = NodeMonitor(self.pool, publish)
        self.ws = (
            WsClient([str(u) for u in config.ws], chain_id=config.chain_id) if config.ws else None
        )
        self.heads = HeadStream(
            config.name, self.pool, ws=self.ws, poll_interval=poll, publish=publish
        )
        self.gas = GasOracle(config.name, self.pool, chain_id=config.chain_id, publish=publish)
        self._poll = poll

    async def start(self) -> ChainServices:
        await self.pool.start()
        if self.ws is not None:
            await self.ws.start()
        await self.heads.start()
        await self.gas.start(self._poll)
        return self

    async def aclose(self) -> None:
        await self.gas.aclose()
        await self.heads.aclose()
        if self.ws is not None:
            await self.ws.aclose()
        await self.pool.aclose()
