"""Sends whose answer is lost, swallowed or late, and nodes that say our nonce is stale: the
Submitter resolves each against a real anvil (behind the fault-injecting proxy) before a nonce
is given back, and the nonce manager follows the chain instead of failing forever."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from eth_account.signers.local import LocalAccount

from mevstack.chain.errors import RpcResponseError
from mevstack.chain.rpc import RpcClient
from mevstack.devnet.anvil import Anvil
from mevstack.execution.lease import LocalLease
from mevstack.execution.nonces import NonceManager
from mevstack.execution.routes import (
    NonceConflict,
    PublicRoute,
    Signer,
    Submitter,
    nonce_conflict,
)
from mevstack.execution.trading_state import SigningGate
from mevstack.obs.metrics import sample_value
from tests.chain.proxy import DelayProxy
from tests.execution_pipeline.test_nonces import GWEI, pending_count, raw_of, receipt_of, transfer
from tests.waiting import wait_until

TIMEOUT = 0.5  # the client's answer deadline; a "late" fault holds a send beyond it


@pytest.fixture
async def proxy(fifo_anvil: Anvil, chain: RpcClient) -> AsyncIterator[DelayProxy]:
    """The fault-injecting proxy in front of the node (``chain`` reverts the node afterwards)."""
    proxy = await DelayProxy(fifo_anvil.rpc_url).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def via(proxy: DelayProxy) -> AsyncIterator[RpcClient]:
    async with RpcClient(proxy.url, timeout=TIMEOUT) as client:
        yield client


def submitter_for(account: LocalAccount, via: RpcClient, chain: str) -> Submitter:
    nonces = NonceManager(chain, account.address, [via])
    signer = Signer(account, SigningGate(), LocalLease())
    return Submitter(PublicRoute([via]), nonces, signer, LocalLease())


def counted(metric: str, chain: str, **labels: str) -> float:
    return sample_value(metric, {"chain": chain, **labels}) or 0.0


async def send_one(submitter: Submitter) -> tuple[str, int, bool, str | None]:
    signed, outcome = await submitter.submit(
        lambda n: transfer(n), target_block=0, expires_at_block=0
    )
    return signed.hash, signed.nonce, outcome.consumed, outcome.resolution


async def test_a_lost_answer_is_found_by_hash_and_its_nonce_is_never_reused(
    proxy: DelayProxy, via: RpcClient, chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    sender = accounts[0]
    submitter = submitter_for(sender, via, "lost-answer")
    before = counted("mevstack_send_unknown_outcome_total", "lost-answer", resolution="received")
    proxy.inject("eth_sendRawTransaction", "lose_answer")
    tx, nonce, consumed, resolution = await send_one(submitter)
    assert proxy.injected["lose_answer"] == 1
    assert consumed and resolution == "received"
    assert proxy.forwarded["eth_sendRawTransaction"] == 1  # looked up, not sent again
    assert (await receipt_of(chain, tx))["status"] == "0x1"
    after = counted("mevstack_send_unknown_outcome_total", "lost-answer", resolution="received")
    assert after == before + 1
    # the next send takes the next nonce: the lost answer's nonce was not handed out again
    tx2, nonce2, consumed2, _ = await send_one(submitter)
    assert consumed2 and nonce2 == nonce + 1
    assert (await receipt_of(chain, tx2))["status"] == "0x1"


async def test_a_swallowed_send_is_sent_again_with_the_same_bytes(
    proxy: DelayProxy, via: RpcClient, chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    sender = accounts[1]
    submitter = submitter_for(sender, via, "swallowed")
    proxy.inject("eth_sendRawTransaction", "swallow")
    tx, nonce, consumed, resolution = await send_one(submitter)
    assert proxy.injected["swallow"] == 1
    assert consumed and resolution == "resent"
    assert proxy.forwarded["eth_sendRawTransaction"] == 1  # only the second copy reached it
    receipt = await receipt_of(chain, tx)
    assert receipt["status"] == "0x1"
    assert await pending_count(chain, sender.address) == nonce + 1


async def test_a_send_delivered_after_the_timeout_lands_once(
    proxy: DelayProxy, via: RpcClient, chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    sender = accounts[2]
    submitter = submitter_for(sender, via, "late")
    proxy.inject("eth_sendRawTransaction", "late", seconds=4 * TIMEOUT)
    tx, nonce, consumed, resolution = await send_one(submitter)
    assert consumed and resolution == "resent"
    await wait_until(
        lambda: proxy.forwarded["eth_sendRawTransaction"] == 2, 10, "the late copy delivered"
    )
    # the late copy of the same bytes changed nothing: one transaction at that nonce
    assert (await receipt_of(chain, tx))["status"] == "0x1"
    assert await pending_count(chain, sender.address) == nonce + 1
    tx2, nonce2, consumed2, _ = await send_one(submitter)
    assert consumed2 and nonce2 == nonce + 1
    assert (await receipt_of(chain, tx2))["status"] == "0x1"


async def test_a_send_nobody_can_resolve_keeps_its_nonce(
    proxy: DelayProxy, via: RpcClient, chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    sender = accounts[3]
    submitter = submitter_for(sender, via, "unresolved")
    start = await pending_count(chain, sender.address)
    proxy.inject("eth_sendRawTransaction", "swallow", times=2)
    tx, nonce, consumed, resolution = await send_one(submitter)
    assert nonce == start and consumed and resolution == "unresolved"
    assert proxy.forwarded["eth_sendRawTransaction"] == 0
    # the node may still get it from somewhere: the nonce stays taken, never handed out again
    assert await chain.request("eth_getTransactionByHash", [tx]) is None
    assert submitter.nonces.next_nonce == start + 1
    assert counted("mevstack_send_unknown_outcome_total", "unresolved", resolution="unresolved")


async def test_nonce_too_low_and_underpriced_resync_from_the_chain(
    proxy: DelayProxy, via: RpcClient, chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    sender = accounts[0]
    submitter = submitter_for(sender, via, "stale")
    tx, nonce, _, _ = await send_one(submitter)
    await receipt_of(chain, tx)
    # another process signs with the same key: our next nonce is stale
    await chain.request("eth_sendRawTransaction", [raw_of(sender, transfer(nonce + 1))])
    with pytest.raises(NonceConflict) as low:
        await send_one(submitter)
    assert low.value.reason == "nonce_too_low"
    assert counted("mevstack_nonce_resyncs_total", "stale", reason="nonce_too_low") == 1
    tx, nonce, consumed, _ = await send_one(submitter)  # healed: the next one goes out
    assert consumed and nonce == await pending_count(chain, sender.address) - 1
    await receipt_of(chain, tx)
    # a transaction of theirs waits in the pool at our next nonce, priced above ours
    await chain.request("evm_setAutomine", [False])
    theirs = raw_of(sender, transfer(nonce + 1, max_fee=200 * GWEI, tip=100 * GWEI))
    await chain.request("eth_sendRawTransaction", [theirs])
    with pytest.raises(NonceConflict) as under:
        await send_one(submitter)
    assert under.value.reason == "underpriced"
    assert counted("mevstack_nonce_resyncs_total", "stale", reason="underpriced") == 1
    tx, nonce2, consumed, _ = await send_one(submitter)
    assert consumed and nonce2 == nonce + 2
    await chain.request("evm_mine", [])
    assert (await receipt_of(chain, tx))["status"] == "0x1"


async def test_a_chain_that_came_back_shorter_is_trusted_only_when_asked(
    chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    sender = accounts[1]
    manager = NonceManager("shorter", sender.address, [chain])
    snapshot = await chain.request("evm_snapshot", [])
    reservation = await manager.reserve()
    sent = await chain.request(
        "eth_sendRawTransaction", [raw_of(sender, transfer(reservation.nonce))]
    )
    reservation.commit()
    await receipt_of(chain, sent)  # anvil mines just after it answers: revert after, not before
    assert await chain.request("evm_revert", [snapshot]) is True  # the block with it is gone
    assert await manager.resync("unknown_outcome") == reservation.nonce + 1  # only moves up
    assert await manager.resync("chain_behind", trust_chain=True) == reservation.nonce
    again = await manager.reserve()
    assert again.nonce == reservation.nonce
    again.release()


def test_only_an_underpriced_replacement_means_the_nonce_is_held() -> None:
    def reason(message: str) -> str | None:
        return nonce_conflict(RpcResponseError(-32000, message))

    assert reason("replacement transaction underpriced") == "underpriced"
    assert reason("nonce too low: next nonce 7, tx nonce 5") == "nonce_too_low"
    assert reason("transaction underpriced") is None  # a fee below the pool's floor
    assert reason("max fee per gas less than block base fee") is None
