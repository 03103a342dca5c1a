"""Session-wide fixtures shared by every test area: real anvil nodes, started once per session."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment, deploy_chain
from tests.databases import throwaway_postgres

# shared fixtures: the hostile peers (deep_http_node), a Redis of a test's own (redis_server)
pytest_plugins = ["tests.hostile", "tests.redis_server"]


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """A plain automining anvil (chain id 31337) on a free port, shared by the whole session.

    Tests that change state take an ``evm_snapshot`` first and ``evm_revert`` after.
    """
    with Anvil(chain_id=31337) as node:
        yield node


@pytest.fixture(scope="session")
def devnet_chain() -> Iterator[tuple[Anvil, ChainDeployment]]:
    """One automining anvil (chain id 1) with WETH9, tokens, two V2 DEXes and V3, all seeded.

    Shared by the whole session: tests that change state use ``chain_snapshot``.
    """
    with Anvil(chain_id=1, balance_eth=1_000_000) as node:
        yield node, deploy_chain(node.rpc_url)


def _rpc(url: str, method: str, params: list[object]) -> object:
    answer = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=30
    ).json()
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


@pytest.fixture
def chain_snapshot(
    devnet_chain: tuple[Anvil, ChainDeployment],
) -> Iterator[tuple[Anvil, ChainDeployment]]:
    """``devnet_chain`` with an ``evm_snapshot`` taken before the test and reverted after."""
    node, deployment = devnet_chain
    snapshot = _rpc(node.rpc_url, "evm_snapshot", [])
    try:
        yield node, deployment
    finally:
        if _rpc(node.rpc_url, "evm_revert", [snapshot]) is not True:
            raise RuntimeError("evm_revert failed: the devnet chain state leaked between tests")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands run in-process configure the root logger; undo it so tests stay independent."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture(scope="session")
def fresh_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """Makes URLs of new empty databases ('sqlite' or 'postgresql'); PG ones dropped at the end."""
    with ExitStack() as databases:

        def make(kind: str) -> str:
            if kind == "sqlite":
                path = tmp_path_factory.mktemp("db") / f"mevstack_{uuid.uuid4().hex[:16]}.db"
                return f"sqlite:///{path}"
            return databases.enter_context(throwaway_postgres())

        yield make
