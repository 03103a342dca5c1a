"""Deploying the executor and sending signed transactions to it (the operator's own key).

Transactions are EIP-1559, signed locally with eth-account and sent raw; the receipt is polled
with a deadline.  Fees: ``2 * base fee + priority fee`` as the cap, the node's suggested priority
fee as the tip, so a transaction stays valid through a few rising blocks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_hex_address, to_checksum_address

from mevstack.chain.errors import RpcError
from mevstack.chain.rpc import JsonRpc
from mevstack.config import Settings
from mevstack.errors import MevstackError
from mevstack.execution.compile import CompiledContract, compile_executor


class DeployError(MevstackError):
    """The executor could not be deployed, or a transaction failed to land."""


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int
    gas_used: int
    block_number: int
    effective_gas_price: int
    contract_address: str | None
    logs: list[dict[str, Any]]


def _receipt(raw: dict[str, Any]) -> Receipt:
    contract = raw.get("contractAddress")
    return Receipt(
        tx_hash=str(raw["transactionHash"]),
        status=int(raw["status"], 16),
        gas_used=int(raw["gasUsed"], 16),
        block_number=int(raw["blockNumber"], 16),
        effective_gas_price=int(raw.get("effectiveGasPrice", "0x0"), 16),
        contract_address=to_checksum_address(contract) if contract else None,
        logs=list(raw.get("logs", [])),
    )


async def wait_receipt(rpc: JsonRpc, tx_hash: str, within: float = 30.0) -> Receipt:
    """Poll for the receipt until it exists or the deadline passes."""
    deadline = time.monotonic() + within
    while True:
        raw = await rpc.request("eth_getTransactionReceipt", [tx_hash])
        if raw is not None:
            return _receipt(raw)
        if time.monotonic() > deadline:
            raise DeployError(f"transaction {tx_hash} not mined within {within:g}s")
        await asyncio.sleep(0.05)  # poll interval of a deadline-bounded wait


async def suggest_fees(rpc: JsonRpc) -> tuple[int, int]:
    """(max_fee_per_gas, max_priority_fee_per_gas) from the latest block and the node's tip."""
    block, tip = await rpc.batch(
        [("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", [])]
    )
    if isinstance(block, RpcError):
        raise block
    priority = 1_000_000_000 if isinstance(tip, RpcError) else int(tip, 16)
    base = int(block.get("baseFeePerGas") or "0x0", 16)
    return 2 * base + priority, priority


async def transact(
    rpc: JsonRpc,
    account: LocalAccount,
    *,
    to: str | None,
    data: bytes,
    value: int = 0,
    gas: int | None = None,
    fees: tuple[int, int] | None = None,
    wait: bool = True,
) -> Receipt | str:
    """Sign and send one transaction from ``account``; the receipt, or the hash if not waiting."""
    chain_hex, nonce_hex = await rpc.batch(
        [("eth_chainId", []), ("eth_getTransactionCount", [account.address, "pending"])]
    )
    if isinstance(chain_hex, RpcError):
        raise chain_hex
    if isinstance(nonce_hex, RpcError):
        raise nonce_hex
    max_fee, priority = fees or await suggest_fees(rpc)
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": int(chain_hex, 16),
        "nonce": int(nonce_hex, 16),
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": priority,
        "value": value,
        "data": data,
    }
    if to is not None:
        tx["to"] = to_checksum_address(to)
    if gas is None:
        call: dict[str, Any] = {"from": account.address, "data": "0x" + data.hex()}
        if to is not None:
            call["to"] = tx["to"]
        if value:
            call["value"] = hex(value)
        gas = int(await rpc.request("eth_estimateGas", [call]), 16) * 12 // 10
    tx["gas"] = gas
    signed = account.sign_transaction(tx)
    tx_hash = await rpc.request("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
    if not wait:
        return str(tx_hash)
    return await wait_receipt(rpc, str(tx_hash))


def creation_code(compiled: CompiledContract, operator: str, owner: str, weth: str) -> bytes:
    args = abi_encode(
        ["address", "address", "address"],
        [to_checksum_address(operator), to_checksum_address(owner), to_checksum_address(weth)],
    )
    return compiled.bytecode + args


async def deploy_executor(
    rpc: JsonRpc,
    account: LocalAccount,
    *,
    owner: str,
    wrapped_native: str,
    operator: str | None = None,
) -> str:
    """Deploy from ``account`` (the operator unless ``operator`` says otherwise); its address."""
    compiled = compile_executor()
    code = creation_code(compiled, operator or account.address, owner, wrapped_native)
    receipt = await transact(rpc, account, to=None, data=code)
    assert isinstance(receipt, Receipt)
    if receipt.status != 1 or receipt.contract_address is None:
        raise DeployError(f"executor deployment {receipt.tx_hash} reverted")
    return receipt.contract_address


@dataclass(frozen=True, slots=True)
class Deployed:
    address: str
    operator: str
    owner: str
    chain_id: int
    warnings: tuple[str, ...]


async def deploy_from_settings(settings: Settings, chain: str, owner: str | None) -> Deployed:
    """``mevstack executor deploy``: the configured key deploys and becomes the operator."""
    from mevstack.chain.rpc import RpcClient
    from mevstack.execution.keys import load_operator_account

    config = settings.chain(chain)
    warnings: list[str] = []
    if owner is not None and not is_hex_address(owner):
        raise DeployError(f"--owner {owner!r} is not an address")
    account = load_operator_account(settings)
    if owner is None:
        owner = account.address
        warnings.append(
            f"no --owner given: the operator {owner} is also the owner, so the hot key can "
            "withdraw funds; pass --owner with a cold address for production"
        )
    last_error: MevstackError | None = None
    for url in config.rpc:
        async with RpcClient(url) as rpc:
            try:
                chain_id = int(await rpc.request("eth_chainId", []), 16)
            except RpcError as exc:
                last_error = exc
                continue
            if chain_id != config.chain_id:
                raise DeployError(
                    f"chain {chain!r}: the node answers chain id {chain_id}, "
                    f"the config says {config.chain_id}"
                )
            address = await deploy_executor(
                rpc, account, owner=owner, wrapped_native=config.wrapped_native
            )
            return Deployed(
                address, account.address, to_checksum_address(owner), chain_id, tuple(warnings)
            )
    raise DeployError(f"chain {chain!r}: no RPC endpoint answered ({last_error})")
