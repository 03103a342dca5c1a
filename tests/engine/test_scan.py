"""`mevstack scan --once` against the real devnet: planted differences are found with the exact
amounts a real execution yields, `[]` when nothing clears the bar, and unreachable chains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import vyper
from eth_utils.address import to_checksum_address

from mevstack.cli import main
from mevstack.config import parse_settings
from mevstack.devnet.anvil import Anvil, free_port
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc, encode_call
from mevstack.engine.scan import ChainScan, scan_chain
from mevstack.strategy.opportunity import Opportunity
from tests.engine.world import Trader, chain_entry, unreachable_entry, write_config


def run_cli(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mevstack.cli", "scan", "--once", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_planted_v2_difference_is_found_with_the_amounts_of_a_real_execution(
    chain_snapshot: tuple[Anvil, ChainDeployment], tmp_path: Path
) -> None:
    node, dep = chain_snapshot
    weth, usdc = dep.weth, dep.token("USDC").address
    uni = dep.pool("uniswap-v2", "WETH", "USDC")
    sushi = dep.pool("sushi-v2", "WETH", "USDC")
    with DevnetRpc(node.rpc_url, timeout=60) as rpc:
        trader = Trader(rpc, dep)
        trader.swap(uni, weth, usdc, 150 * 10**18)  # WETH is now cheap on uniswap-v2
        block = int(rpc.call("eth_blockNumber"), 16)
        config = write_config(
            tmp_path / "mevstack.toml", [chain_entry("ethereum", node.rpc_url, dep)], tmp_path
        )
        done = run_cli(config)
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)  # the whole of stdout is one JSON array
        assert isinstance(found, list) and found
        assert all(o["block_number"] == block and o["status"] == "detected" for o in found)
        pair = {uni.address, sushi.address}
        planted = [
            o for o in found if {h["pool"] for h in o["path"]} == pair and o["token"] == weth
        ]
        assert len(planted) == 1
        opportunity = planted[0]
        assert opportunity["path"][0]["pool"] == sushi.address  # sell WETH where it is dear

        best = found[0]
        assert int(best["net_profit_wei"]) >= max(int(o["net_profit_wei"]) for o in found)
        v3_pools = {p.address for p in dep.pools if p.kind == "uniswap_v3"}
        with_v3 = [o for o in found if any(h["pool"] in v3_pools for h in o["path"])]
        assert with_v3, "V3 pools are part of the scan"
        triangles = [o for o in found if len(o["path"]) == 3]
        assert triangles, "3-pool cycles are part of the scan"
        chosen = [opportunity, best, with_v3[0], triangles[0]]
        for candidate in {o["id"]: o for o in chosen}.values():
            snapshot = rpc.call("evm_snapshot")
            try:
                received, profit = trader.execute(candidate)
                assert received == [int(h["amount_out"]) for h in candidate["path"]]
                assert profit == int(candidate["gross_profit"])
                assert int(candidate["amount_out"]) - int(candidate["amount_in"]) == profit
            finally:
                assert rpc.call("evm_revert", [snapshot]) is True


def test_nothing_above_the_threshold_prints_an_empty_array(
    devnet_chain: tuple[Anvil, ChainDeployment],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node, dep = devnet_chain
    entry = chain_entry("ethereum", node.rpc_url, dep, min_net_profit_wei=str(10**30))
    config = write_config(tmp_path / "mevstack.toml", [entry], tmp_path)
    assert main(["scan", "--once", "--json", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "[]\n"


def test_unreachable_chain_is_named_and_partial_still_prints_the_others(
    devnet_chain: tuple[Anvil, ChainDeployment],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node, dep = devnet_chain
    dead = unreachable_entry("deadchain", 10, free_port(), dep.weth)
    config = write_config(
        tmp_path / "mevstack.toml", [chain_entry("ethereum", node.rpc_url, dep), dead], tmp_path
    )
    argv = ["scan", "--once", "--json", "--config", str(config)]

    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "deadchain" in err and "ethereum" not in err

    code = main([*argv, "--partial"])
    out, err = capsys.readouterr()
    assert code != 0
    assert "deadchain" in err and "Traceback" not in err
    printed = json.loads(out)
    assert printed and {o["chain"] for o in printed} == {"ethereum"}


# A token that burns 1 % of every transfer (fee on transfer), with the metadata a pool needs.
TAXED_TOKEN = """
# pragma version 0.4.3
balanceOf: public(HashMap[address, uint256])
totalSupply: public(uint256)
decimals: public(uint8)
symbol: public(String[8])

@deploy
def __init__(supply: uint256):
    self.balanceOf[msg.sender] = supply
    self.totalSupply = supply
    self.decimals = 18
    self.symbol = "TAX"

@external
def transfer(to: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount - amount // 100
    self.totalSupply -= amount // 100
    return True
"""


async def test_a_fee_on_transfer_token_is_never_in_a_path(
    chain_snapshot: tuple[Anvil, ChainDeployment],
) -> None:
    node, dep = chain_snapshot
    me, weth = dep.deployer, dep.weth
    code = bytes.fromhex(
        vyper.compile_code(TAXED_TOKEN, output_formats=["bytecode"])["bytecode"][2:]
    )
    with DevnetRpc(node.rpc_url, timeout=60) as rpc:
        receipt = rpc.transact(me, None, code + (10**30).to_bytes(32, "big"))
        taxed = to_checksum_address(receipt["contractAddress"])
        rpc.transact(me, weth, encode_call("deposit()"), value=1_000 * 10**18)
        for dex, weth_amount in zip(dep.v2, (100, 110), strict=True):  # a 10 % price gap
            rpc.transact(me, dex.factory, encode_call("createPair(address,address)", taxed, weth))
            pair = rpc.view(dex.factory, "getPair(address,address)", ["address"], taxed, weth)
            rpc.transact(me, taxed, encode_call("transfer(address,uint256)", pair, 10**24))
            rpc.transact(
                me, weth, encode_call("transfer(address,uint256)", pair, weth_amount * 10**18)
            )
            rpc.transact(me, pair, encode_call("mint(address)", me))
    settings = parse_settings(
        {"chains": [chain_entry("ethereum", node.rpc_url, dep)]}, source="test", environ={}
    )

    def through_taxed(scan: ChainScan) -> list[Opportunity]:
        return [
            o for o in scan.opportunities if any(taxed in (h.token_in, h.token_out) for h in o.path)
        ]

    unchecked = await scan_chain(settings.chains[0], check_tokens=False)
    assert through_taxed(unchecked), "without the check, the taxed token's gap looks profitable"
    checked = await scan_chain(settings.chains[0])
    assert checked.opportunities and not through_taxed(checked)
    assert checked.pools == unchecked.pools - 2
