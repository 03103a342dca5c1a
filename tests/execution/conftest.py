"""Fixtures of the execution tests: the executor deployed on the shared devnet chain.

Everything here runs inside a module-wide ``evm_snapshot`` (reverted at the end of the module) and
each test inside its own, so the shared devnet chain is left exactly as found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from eth_account import Account

from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc
from mevstack.execution.deploy import deploy_executor
from tests.execution.world import OPERATOR_KEY, World, new_attacker


@pytest.fixture(scope="module")
def module_snapshot(
    devnet_chain: tuple[Anvil, ChainDeployment],
) -> Iterator[DevnetRpc]:
    node, _ = devnet_chain
    with DevnetRpc(node.rpc_url) as sync:
        snapshot = sync.call("evm_snapshot", [])
        try:
            yield sync
        finally:
            assert sync.call("evm_revert", [snapshot]) is True


@pytest.fixture(scope="module")
async def world_module(
    devnet_chain: tuple[Anvil, ChainDeployment], module_snapshot: DevnetRpc
) -> AsyncIterator[World]:
    node, d = devnet_chain
    operator = Account.from_key(OPERATOR_KEY)
    attacker = new_attacker()
    module_snapshot.call("anvil_setBalance", [attacker.address, hex(10**21)])
    async with RpcClient(node.rpc_url) as rpc:
        executor = await deploy_executor(rpc, operator, owner=d.deployer, wrapped_native=d.weth)
        yield World(node, d, rpc, module_snapshot, operator, attacker, d.deployer, executor)


@pytest.fixture
def world(world_module: World) -> Iterator[World]:
    snapshot = world_module.sync.call("evm_snapshot", [])
    try:
        yield world_module
    finally:
        assert world_module.sync.call("evm_revert", [snapshot]) is True
