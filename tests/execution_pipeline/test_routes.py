"""Submission routes against a real anvil and the local relay stand-in."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import Signature
from eth_utils.crypto import keccak

from mevstack.chain.rpc import RpcClient
from mevstack.execution.lease import LocalLease
from mevstack.execution.nonces import NonceManager
from mevstack.execution.relay_signing import (
    HEADER,
    RelaySignatureError,
    sign_body,
    verify_header,
)
from mevstack.execution.routes import (
    BundleRoute,
    PrivateRoute,
    PublicRoute,
    SendUncertain,
    Signer,
    Submitter,
    backrun_public_fees,
    tx_hash,
)
from mevstack.execution.trading_state import KillSwitchEngaged, SigningGate
from tests.execution_pipeline.relay import LocalRelay
from tests.execution_pipeline.test_nonces import GWEI, raw_of, receipt_of, transfer
from tests.waiting import wait_until

AUTH = Account.create()  # the relay reputation key: never the operator key


def test_signature_is_personal_sign_over_the_hex_keccak_of_the_exact_body() -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle","params":[]}'
    header = sign_body(AUTH, body)
    address, _, signature = header.partition(":")
    assert address == AUTH.address
    # recompute independently from the rule: keccak256("\x19Ethereum Signed Message:\n" +
    # len(text) + text) where text is the 0x-prefixed lowercase hex of keccak256(body)
    text = ("0x" + keccak(body).hex()).encode()
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(text)).encode() + text)
    raw = bytes.fromhex(signature[2:])
    recovered = Signature(raw[:64] + bytes([raw[64] - 27])).recover_public_key_from_msg_hash(digest)
    assert recovered.to_checksum_address() == AUTH.address
    assert verify_header(header, body) == AUTH.address
    with pytest.raises(RelaySignatureError, match="does not match"):
        verify_header(header, body + b" ")
    for bad in (None, "", "nocolon", f"{AUTH.address}:0x1234", "0xzz:0x00"):
        with pytest.raises(RelaySignatureError):
            verify_header(bad, body)


async def _post(url: str, body: bytes, header: str | None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers[HEADER] = header
    async with httpx.AsyncClient() as http:
        answer: dict[str, Any] = (await http.post(url, content=body, headers=headers)).json()
    return answer


async def test_relay_rejects_bad_signatures_and_bad_bundles(
    chain: RpcClient, relay: LocalRelay, accounts: list[LocalAccount]
) -> None:
    head = int(await chain.request("eth_blockNumber", []), 16)
    raw = raw_of(accounts[0], transfer(0))
    good = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "eth_sendBundle",
            "params": [{"txs": [raw], "blockNumber": hex(head + 1)}],
        }
    )
    missing = await _post(relay.url, good, None)
    assert missing["error"]["code"] == -32600 and missing["id"] == 7
    forged = (
        sign_body(AUTH, good).split(":")[0] + ":" + sign_body(Account.create(), good).split(":")[1]
    )
    assert (await _post(relay.url, good, forged))["error"]["code"] == -32600
    for params in (
        [{"txs": [], "blockNumber": hex(head + 1)}],
        [{"txs": ["0x1234"], "blockNumber": hex(head + 1)}],
        [{"txs": [raw], "blockNumber": head + 1}],
        [{"txs": [raw], "blockNumber": hex(head)}],
        {"txs": [raw]},
    ):
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle", "params": params}
        )
        answer = await _post(relay.url, body, sign_body(AUTH, body))
        assert answer["error"]["code"] == -32602, params
    assert relay.included == [] and relay.lost == [] and relay.received == []
    assert int(await chain.request("eth_blockNumber", []), 16) == head


def _signer(account: LocalAccount, gate: SigningGate | None = None) -> Signer:
    return Signer(account, gate or SigningGate(), LocalLease())


async def test_backrun_bundle_lands_in_order_after_retargeting(
    chain: RpcClient, relay: LocalRelay, accounts: list[LocalAccount]
) -> None:
    victim, operator, early, late = accounts

    async def next_nonce(account: LocalAccount) -> int:
        return int(await chain.request("eth_getTransactionCount", [account.address, "pending"]), 16)

    trigger = raw_of(victim, transfer(await next_nonce(victim), tip=GWEI))
    # the backrun was priced behind two pending transactions: ``early`` is also in the public
    # mempool and gets mined in a slot the bundle misses, ``late`` only travels in the bundle
    early_raw = raw_of(early, transfer(await next_nonce(early), tip=2 * GWEI))
    late_raw = raw_of(late, transfer(await next_nonce(late), tip=2 * GWEI))
    await chain.request("evm_setAutomine", [False])
    await chain.request("eth_sendRawTransaction", [early_raw])
    nonces = NonceManager("dev", operator.address, [chain])
    route = BundleRoute([relay.url], AUTH, chain, block_time=0.5)
    submitter = Submitter(route, nonces, _signer(operator), LocalLease())
    head = int(await chain.request("eth_blockNumber", []), 16)
    relay.lose_blocks = 2  # two slots go to someone else: the bundle must follow
    # a public send queued meanwhile must not take the next nonce before the bundle settles
    public = Submitter(PublicRoute([chain]), nonces, _signer(operator), LocalLease())

    async def later_public() -> int:
        signed, _ = await public.submit(
            lambda n: transfer(n, max_fee=30 * GWEI, tip=5 * GWEI),
            target_block=0,
            expires_at_block=0,
        )
        return signed.nonce

    bundle_task = asyncio.create_task(
        submitter.submit(
            lambda n: transfer(n, tip=GWEI),
            target_block=head + 1,
            expires_at_block=head + 5,
            trigger_raw=trigger,
            ahead_raws=[early_raw, late_raw],
        )
    )
    await wait_until(lambda: nonces._exclusive is not None, what="the bundle reservation")
    public_task = asyncio.create_task(later_public())
    signed, outcome = await bundle_task
    assert outcome.consumed and outcome.included_block == head + 3 and outcome.attempts == 3
    assert relay.lost == [head + 1, head + 2]
    early_hash, late_hash = tx_hash(early_raw), tx_hash(late_raw)
    full = [early_hash, late_hash, tx_hash(trigger), signed.hash]
    rest = full[1:]  # ``early`` is on chain from head + 1: a bundle holding it cannot land
    assert relay.received == [(head + 1, full), (head + 2, rest), (head + 3, rest)]
    assert relay.included[-1].tx_hashes == rest and outcome.tx_hashes == tuple(rest)
    missed = await chain.request("eth_getBlockByNumber", [hex(head + 1), False])
    assert missed["transactions"] == [early_hash]
    block = await chain.request("eth_getBlockByNumber", [hex(head + 3), False])
    assert block["transactions"] == rest
    assert await public_task == signed.nonce + 1


async def test_bundle_that_never_lands_does_not_consume_its_nonce(
    chain: RpcClient, relay: LocalRelay, accounts: list[LocalAccount]
) -> None:
    operator = accounts[2]
    nonces = NonceManager("dev", operator.address, [chain])
    start = await nonces.sync()
    route = BundleRoute([relay.url], AUTH, chain, block_time=0.5)
    submitter = Submitter(route, nonces, _signer(operator), LocalLease())
    head = int(await chain.request("eth_blockNumber", []), 16)
    relay.lose_blocks = 10
    signed, outcome = await submitter.submit(
        lambda n: transfer(n), target_block=head + 1, expires_at_block=head + 2
    )
    assert not outcome.consumed and outcome.attempts == 2 and outcome.included_block is None
    assert await chain.request("eth_getTransactionReceipt", [signed.hash]) is None
    again = await nonces.reserve()
    assert again.nonce == start == signed.nonce
    again.release()


async def test_public_route_counts_already_known_as_success_and_private_goes_to_relays(
    chain: RpcClient, relay: LocalRelay, accounts: list[LocalAccount]
) -> None:
    sender = accounts[3]
    nonce = int(await chain.request("eth_getTransactionCount", [sender.address, "pending"]), 16)
    await chain.request("evm_setAutomine", [False])
    raw = raw_of(sender, transfer(nonce))
    await chain.request("eth_sendRawTransaction", [raw])  # another node delivered it first
    route = PublicRoute([chain, chain])
    outcome = await route.submit([raw], watch=tx_hash(raw), target_block=0, expires_at_block=0)
    assert outcome.consumed and outcome.tx_hashes == (tx_hash(raw),)
    await chain.request("evm_setAutomine", [True])
    await chain.request("evm_mine", [])
    private = PrivateRoute([relay.url], AUTH)
    try:
        raw2 = raw_of(sender, transfer(nonce + 1))
        sent = await private.submit([raw2], watch=tx_hash(raw2), target_block=0, expires_at_block=0)
        receipt = await receipt_of(chain, tx_hash(raw2))
        assert sent.consumed and receipt["status"] == "0x1"
    finally:
        await private.aclose()


async def test_kill_switch_stops_signing_and_the_nonce_is_given_back(
    chain: RpcClient, accounts: list[LocalAccount]
) -> None:
    operator = accounts[0]
    gate = SigningGate()
    nonces = NonceManager("dev", operator.address, [chain])
    start = await nonces.sync()
    submitter = Submitter(PublicRoute([chain]), nonces, _signer(operator, gate), LocalLease())
    gate.close()
    with pytest.raises(KillSwitchEngaged):
        await submitter.submit(lambda n: transfer(n), target_block=0, expires_at_block=0)
    assert nonces.next_nonce == start
    assert (
        int(await chain.request("eth_getTransactionCount", [operator.address, "pending"]), 16)
        == start
    )


def test_public_backrun_is_never_priced_above_its_trigger() -> None:
    base = 7 * GWEI
    max_fee, tip = backrun_public_fees(
        trigger_max_fee=10 * GWEI, trigger_priority_fee=5 * GWEI, base_fee=base
    )
    # the trigger can only pay 3 gwei of its 5 gwei tip at this base fee
    assert (max_fee, tip) == (10 * GWEI, 3 * GWEI)
    assert min(tip, max_fee - base) <= min(5 * GWEI, 10 * GWEI - base)


async def test_a_relay_answer_nested_to_death_is_an_uncertain_send(deep_http_node: str) -> None:
    """The relay may have taken the transaction before its answer went bad, so the send's
    outcome is unknown (resolved from the chain before the nonce is reused), not refused."""
    route = PrivateRoute([deep_http_node], Account.create())
    try:
        with pytest.raises(SendUncertain, match=r"relay http:.*: JSONDecodeError"):
            await route.submit(
                [raw_of(Account.create(), transfer(0))],
                watch="",
                target_block=1,
                expires_at_block=2,
            )
    finally:
        await route.aclose()
