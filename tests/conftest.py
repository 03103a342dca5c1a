"""Session-wide fixtures shared by every test area: real anvil nodes, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mevstack.devnet.anvil import Anvil


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """A plain automining anvil (chain id 31337) on a free port, shared by the whole session.

    Tests that change state take an ``evm_snapshot`` first and ``evm_revert`` after.
    """
    with Anvil(chain_id=31337) as node:
        yield node
