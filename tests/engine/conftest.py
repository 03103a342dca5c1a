"""Fixtures of the engine tests: a devnet chain equipped for execution, one per test module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import deploy_chain
from mevstack.devnet.rpc import DevnetRpc
from tests.engine.world import ExecutionWorld, equip_for_execution


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ExecutionWorld]:
    """An anvil chain with the real Uniswap contracts, our executor and a funded operator key
    (its own per module: modules isolate their tests with snapshots, never with each other)."""
    with Anvil(chain_id=1, balance_eth=1_000_000) as node:
        dep = await asyncio.to_thread(deploy_chain, node.rpc_url)
        with DevnetRpc(node.rpc_url, timeout=60) as rpc:
            yield await equip_for_execution(node, dep, rpc, tmp_path_factory.mktemp("keys"))
