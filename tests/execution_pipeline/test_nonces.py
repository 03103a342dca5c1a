"""Nonce manager on a real anvil: concurrency, reuse without gaps, restarts, replacement."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from mevstack.chain.errors import RpcResponseError
from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.execution.nonces import (
    NonceError,
    NonceManager,
    bumped,
    cancellation_tx,
    replacement_fees,
)
from mevstack.store import Store

GWEI = 10**9
SINK = "0x000000000000000000000000000000000000dEaD"


def transfer(nonce: int, *, max_fee: int = 20 * GWEI, tip: int = GWEI) -> dict[str, Any]:
    return {
        "type": 2,
        "chainId": 31337,
        "nonce": nonce,
        "to": SINK,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip,
    }


def raw_of(account: LocalAccount, tx: dict[str, Any]) -> str:
    return "0x" + bytes(account.sign_transaction(tx).raw_transaction).hex()


async def receipt_of(rpc: RpcClient, tx_hash: str, within: float = 10.0) -> dict[str, Any]:
    """The receipt, polled with a deadline: anvil's automine mines just after it answers."""
    deadline = asyncio.get_running_loop().time() + within
    while (receipt := await rpc.request("eth_getTransactionReceipt", [tx_hash])) is None:
        assert asyncio.get_running_loop().time() < deadline, f"{tx_hash} not mined"
        await asyncio.sleep(0.01)  # polling the node with a deadline
    return dict(receipt)


async def pending_count(rpc: RpcClient, address: str) -> int:
    return int(await rpc.request("eth_getTransactionCount", [address, "pending"]), 16)


def test_fee_bump_is_at_least_ten_percent_and_strictly_higher() -> None:
    assert bumped(100) == 110
    assert bumped(101) == 112  # 111.1 rounds up: 111 would be under geth's threshold
    assert bumped(0) == 1
    assert bumped(5) == 6
    assert replacement_fees(30 * GWEI, 2 * GWEI) == (33 * GWEI, 2_200_000_000)
    # the fee cap never ends below the tip
    assert replacement_fees(10, 10) == (11, 11)


async def test_twenty_concurrent_reservations_land_with_consecutive_nonces(
    chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    sender = accounts[0]
    start = await pending_count(chain, sender.address)
    manager = NonceManager("dev", sender.address, [chain])

    async def one(i: int) -> str:
        async with await manager.reserve() as reservation:
            for _ in range(i % 3):  # interleave the tasks differently
                await asyncio.sleep(0)
            tx_hash = await chain.request(
                "eth_sendRawTransaction", [raw_of(sender, transfer(reservation.nonce))]
            )
            reservation.commit()
            return str(tx_hash)

    hashes = await asyncio.gather(*(one(i) for i in range(20)))
    receipts = [await receipt_of(chain, h) for h in hashes]
    nonces = sorted(
        [int((await chain.request("eth_getTransactionByHash", [h]))["nonce"], 16) for h in hashes]
    )
    assert nonces == list(range(start, start + 20))
    assert all(r is not None and r["status"] == "0x1" for r in receipts)
    assert await pending_count(chain, sender.address) == start + 20
    assert manager.next_nonce == start + 20 and manager.gaps() == []


async def test_released_nonce_is_reused_first_and_top_release_shrinks(
    chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    manager = NonceManager("dev", accounts[1].address, [chain])
    base = await manager.sync()
    a, b, c = [await manager.reserve() for _ in range(3)]
    assert [a.nonce, b.nonce, c.nonce] == [base, base + 1, base + 2]
    await chain.request("eth_sendRawTransaction", [raw_of(accounts[1], transfer(a.nonce))])
    a.commit()
    c.commit()  # pretend c went out: b released below it is a gap until reused
    b.release()
    assert manager.gaps() == [base + 1]
    d = await manager.reserve()
    assert d.nonce == base + 1 and manager.gaps() == []
    d.release()
    with pytest.raises(NonceError):
        d.release()
    # releasing the top nonce hands it back without leaving a hole
    e = await manager.reserve()
    f = await manager.reserve()
    assert (e.nonce, f.nonce) == (base + 1, base + 3)
    f.release()
    e.release()
    assert manager.next_nonce == base + 3


async def test_exclusive_reservation_blocks_the_next_nonce_until_it_settles(
    chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    manager = NonceManager("dev", accounts[1].address, [chain])
    base = await manager.sync()
    bundle = await manager.reserve(exclusive=True)
    other = asyncio.create_task(manager.reserve())
    for _ in range(20):
        await asyncio.sleep(0)  # give the other task every chance to run
    assert not other.done(), "a nonce was handed out while a bundle holds the previous one"
    bundle.release()  # the bundle did not land: its nonce is not consumed
    reservation = await asyncio.wait_for(other, 5)
    assert reservation.nonce == base
    reservation.release()


async def test_restart_takes_the_max_of_endpoints_and_the_local_record(
    chain: RpcClient, accounts: list[LocalAccount], sqlite_store: Store
) -> None:
    sender = accounts[2]
    # a second node of the same chain that has seen two more transactions than the first
    with Anvil(chain_id=31337) as other_node:
        async with RpcClient(other_node.rpc_url) as other:
            first = await pending_count(chain, sender.address)
            base_other = await pending_count(other, sender.address)
            for n in range(base_other, base_other + first + 2):
                await other.request("eth_sendRawTransaction", [raw_of(sender, transfer(n))])
            manager = NonceManager("dev", sender.address, [chain, other], store=sqlite_store)
            assert await manager.sync() == first + 2
            reservation = await manager.reserve()
            assert reservation.nonce == first + 2
            reservation.commit()  # recorded locally as sent
            # restart: the record (first + 3) beats both nodes' pending counts
            restarted = NonceManager("dev", sender.address, [chain, other], store=sqlite_store)
            assert await restarted.sync() == first + 3
    # an unreachable endpoint is ignored as long as one answers
    dead = RpcClient(f"http://127.0.0.1:{other_node.port}", timeout=1)
    try:
        manager = NonceManager("dev", sender.address, [dead, chain])
        assert await manager.sync() == first
        with pytest.raises(NonceError, match="no endpoint answered"):
            await NonceManager("dev", sender.address, [dead]).sync()
    finally:
        await dead.aclose()


async def test_replacement_and_cancellation_at_the_same_nonce(
    chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    sender = accounts[3]
    manager = NonceManager("dev", sender.address, [chain])
    await chain.request("evm_setAutomine", [False])
    reservation = await manager.reserve()
    nonce = reservation.nonce
    original = transfer(nonce, max_fee=20 * GWEI, tip=2 * GWEI)
    await chain.request("eth_sendRawTransaction", [raw_of(sender, original)])
    reservation.commit()
    # the same fees do not replace (anvil only demands "higher"; geth's +10% is unit-tested)
    same = transfer(nonce, max_fee=20 * GWEI, tip=2 * GWEI)
    same["value"] = 2
    with pytest.raises(RpcResponseError, match=r"(?i)underpriced|already"):
        await chain.request("eth_sendRawTransaction", [raw_of(sender, same)])
    max_fee, tip = replacement_fees(20 * GWEI, 2 * GWEI)
    replaced = transfer(nonce, max_fee=max_fee, tip=tip)
    replaced["value"] = 3
    await chain.request("eth_sendRawTransaction", [raw_of(sender, replaced)])
    # cancel it: a 0-value self-transfer at the same nonce, bumped over the replacement
    cancel_fee, cancel_tip = replacement_fees(max_fee, tip)
    cancel = cancellation_tx(
        account=sender.address,
        chain_id=31337,
        nonce=nonce,
        max_fee_per_gas=cancel_fee,
        max_priority_fee_per_gas=cancel_tip,
    )
    signed = sender.sign_transaction(cancel)
    cancel_hash = await chain.request(
        "eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()]
    )
    await chain.request("evm_mine", [])
    receipt = await chain.request("eth_getTransactionReceipt", [cancel_hash])
    assert receipt is not None and receipt["status"] == "0x1"
    mined = await chain.request("eth_getTransactionByHash", [cancel_hash])
    assert int(mined["nonce"], 16) == nonce and int(mined["value"], 16) == 0
    assert mined["to"].lower() == sender.address.lower()
    assert await pending_count(chain, sender.address) == nonce + 1
