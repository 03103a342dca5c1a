"""ChainServices wired from a [[chains]] config on a real anvil: the three events flow."""

from __future__ import annotations

from typing import Any

from mevstack.chain.heads import NewBlock
from mevstack.chain.service import ChainServices
from mevstack.config import ChainConfig
from mevstack.devnet.anvil import Anvil
from mevstack.events import EventName
from tests.chain.chaindriver import Driver
from tests.ports import free_port_block
from tests.waiting import wait_until


async def test_chain_services_publish_status_gas_and_blocks(anvil: Anvil) -> None:
    config = ChainConfig.model_validate(
        {
            "name": "dev",
            "chain_id": 31337,
            "rpc": [anvil.rpc_url],
            # nothing listens on the first: the second must serve (every URL is used)
            "ws": [f"ws://127.0.0.1:{free_port_block(1)}", anvil.ws_url],
            "block_time": 1.0,
            "wrapped_native": "0x" + "11" * 20,
        }
    )
    events: list[tuple[EventName, dict[str, Any]]] = []

    async def publish(name: EventName, chain: str | None, data: dict[str, Any]) -> None:
        assert chain == "dev"
        events.append((name, data))

    services = await ChainServices(config, publish).start()
    consumer = services.heads.register()
    driver = Driver(anvil.rpc_url)
    snapshot = driver.rpc("evm_snapshot", [])
    try:
        await wait_until(lambda: services.heads.tracker.last is not None, within=10.0)
        ws = services.ws
        assert ws is not None and ws.chain_id == 31337
        await wait_until(lambda: ws.endpoint is ws.endpoints[1], what="the second ws URL")
        driver.rpc("evm_mine", [])
        wanted = {EventName.NODE_STATUS, EventName.GAS_PRICE, EventName.BLOCK_NEW}
        await wait_until(
            lambda: wanted <= {name for name, _ in events},
            within=10.0,
            what="node.status, gas.price and block.new",
        )
        await wait_until(lambda: consumer.queue.qsize() >= 1, within=10.0)
        item = consumer.queue.get_nowait()
        assert isinstance(item, NewBlock)
        gas = next(d for n, d in events if n is EventName.GAS_PRICE)
        assert gas["chain"] == "dev" and int(gas["base_fee_wei"]) > 0
        status = next(d for n, d in events if n is EventName.NODE_STATUS)
        assert status["state"] == "ok" and status["url"] == anvil.rpc_url
    finally:
        await services.aclose()
        driver.rpc("evm_revert", [snapshot])
        driver.close()
