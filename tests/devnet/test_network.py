"""Chain selection, block-time scaling and the written config (loaded by mevstack's own loader)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mevstack.config import load_settings
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.network import (
    CHAIN_SPECS,
    DevnetChain,
    chain_port,
    render_config,
    scaled_block_time,
    select_chains,
    write_atomically,
)
from mevstack.errors import DevnetError


@pytest.mark.parametrize(
    ("real", "scale", "expected"),
    [
        (12.0, 0.25, 3),
        (12.0, 1.0, 12),
        (0.25, 0.25, 1),
        (2.0, 0.25, 1),
        (2.0, 1.0, 2),
        (2.0, 2.6, 5),
    ],
)
def test_block_time_is_scaled_whole_seconds_with_floor(
    real: float, scale: float, expected: int
) -> None:
    assert scaled_block_time(real, scale) == expected


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_bad_time_scale_is_an_error(scale: float) -> None:
    with pytest.raises(DevnetError, match="--time-scale"):
        scaled_block_time(12.0, scale)


def test_select_chains_keeps_canonical_order_and_ports() -> None:
    specs = select_chains(" base,Ethereum ,base")
    assert [s.name for s in specs] == ["ethereum", "base"]
    assert [chain_port(s, 9000) for s in specs] == [9000, 9004]
    assert [s.chain_id for s in CHAIN_SPECS] == [1, 42161, 10, 137, 8453]
    with pytest.raises(DevnetError, match="no chain"):
        select_chains(" , ")


def test_written_config_loads(devnet_chain: tuple[Anvil, ChainDeployment], tmp_path: Path) -> None:
    node, d = devnet_chain
    spec = select_chains("optimism")[0]
    path = tmp_path / "nested" / "devnet.toml"
    write_atomically(path, render_config([DevnetChain(spec, node, 1, d)]))
    settings = load_settings(path, environ={})
    (chain,) = settings.chains
    assert (chain.name, chain.chain_id, chain.block_time) == ("optimism", 10, 1.0)
    assert chain.rpc == [node.rpc_url] and chain.ws == [node.ws_url]
    assert chain.wrapped_native == d.weth
    assert chain.base_tokens == [d.weth, d.tokens["USDC"].address]
    v2 = [x for x in chain.dexes if x.kind == "uniswap_v2"]
    assert [(x.name, x.factory, x.fee_bps) for x in v2] == [(x.name, x.factory, 30) for x in d.v2]
    assert all(x.init_code_hash == d.v2[0].init_code_hash for x in v2)
    (v3,) = [x for x in chain.dexes if x.kind == "uniswap_v3"]
    assert (v3.factory, v3.init_code_hash) == (d.v3.factory, d.v3.init_code_hash)
    # Nothing but what docs/contracts.md documents: the loader forbids unknown keys, and so do we.
    assert set(tomllib.loads(path.read_text())) == {"chains"}
