"""Fixtures of the execution pipeline tests: an own anvil (fifo ordering, so a bundle keeps its
order in a block), the local bundle relay on it, and stores on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.store import Store
from tests.execution_pipeline.relay import LocalRelay

# anvil's well-known dev keys (mnemonic "test test ... junk"), accounts 1..4
DEV_KEYS = [
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
]


@pytest.fixture(scope="session")
def fifo_anvil() -> Iterator[Anvil]:
    with Anvil(chain_id=31337, extra_args=["--order", "fifo"]) as node:
        yield node


@pytest.fixture(scope="session")
async def node_rpc(fifo_anvil: Anvil) -> AsyncIterator[RpcClient]:
    async with RpcClient(fifo_anvil.rpc_url) as rpc:
        yield rpc


@pytest.fixture
async def chain(node_rpc: RpcClient) -> AsyncIterator[RpcClient]:
    """The node with an evm_snapshot around the test."""
    snapshot = await node_rpc.request("evm_snapshot", [])
    try:
        yield node_rpc
    finally:
        await node_rpc.request("evm_setAutomine", [True])
        assert await node_rpc.request("evm_revert", [snapshot]) is True


@pytest.fixture
def accounts() -> list[LocalAccount]:
    return [Account.from_key(k) for k in DEV_KEYS]


@pytest.fixture
async def relay(fifo_anvil: Anvil) -> AsyncIterator[LocalRelay]:
    stand_in = LocalRelay(fifo_anvil.rpc_url)
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_factory(
    request: pytest.FixtureRequest, fresh_url: Callable[[str], str]
) -> Iterator[Callable[[], Store]]:
    """Opens the same fresh database again on each call (a restart), closing all at the end."""
    url = fresh_url(request.param)
    opened: list[Store] = []

    def open_store() -> Store:
        opened.append(Store.open(url))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def sqlite_store(fresh_url: Callable[[str], str]) -> Iterator[Store]:
    store = Store.open(fresh_url("sqlite"))
    yield store
    store.close()
