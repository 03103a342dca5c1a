"""Gas oracle of one chain: base fee now and next, priority-fee percentiles, the L1 data-fee model.

Owns the :class:`GasQuote` (its docs/contracts.md shape via :meth:`GasQuote.to_json`) and its
publication as ``gas.price``. The next base fee comes from :mod:`mevstack.chain.basefee` (pure,
exact); the rule is chosen once per oracle from the node (``web3_clientVersion``) and chain id.

Priority fees: ``eth_feeHistory`` over the last ``window`` blocks at the 10th/50th/90th
percentiles; each reported percentile is the median of that percentile over the window's
non-empty blocks (an empty block's "reward" is 0 by definition and says nothing about demand).

L1 data fee (rollups):

* ``op_stack`` — the GasPriceOracle predeploy at 0x420000000000000000000000000000000000000F.
  For one transaction, :meth:`GasOracle.l1_fee` asks ``getL1Fee(bytes)`` for the exact bytes
  (after Fjord the fee depends on the FastLZ-compressed size of that very transaction).  The
  quote's per-KB figure is ``getL1FeeUpperBound(1024)`` after Fjord (incompressible 1 KB, the
  worst case), or ``getL1Fee`` of 1 KB of non-zero bytes before it.
* ``arbitrum`` — ArbGasInfo at 0x6C ``getPricesInWei()``: its second word is wei per L1 calldata
  byte.  Arbitrum charges the L1 cost as extra *gas units* inside ``eth_estimateGas`` and
  ``gasUsed``, so ``l1_fee_included_in_gas`` is true and :meth:`GasOracle.l1_fee` returns 0:
  adding it to gas × price would count it twice.
* ``none`` — neither contract answers on this node; the quote says why (``l1_fee_reason``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from statistics import median_low
from typing import Any, Literal

from eth_abi.abi import decode, encode

from mevstack.chain.basefee import BaseFeeRule, ParentHeader, RuleKind, rule_for
from mevstack.chain.errors import RpcError, RpcResponseError
from mevstack.chain.rpc import JsonRpc
from mevstack.events import EventName, utc_now_iso

log = logging.getLogger(__name__)

L1FeeModel = Literal["none", "op_stack", "arbitrum"]
Publisher = Callable[[EventName, str | None, dict[str, Any]], Awaitable[None]]

OP_GAS_PRICE_ORACLE = "0x420000000000000000000000000000000000000F"
ARB_GAS_INFO = "0x000000000000000000000000000000000000006C"
_SEL_GET_L1_FEE = bytes.fromhex("49948e0e")  # getL1Fee(bytes)
_SEL_GET_L1_FEE_UPPER_BOUND = bytes.fromhex("f1c7a58b")  # getL1FeeUpperBound(uint256)
_SEL_IS_FJORD = bytes.fromhex("960e3a23")  # isFjord()
_SEL_GET_PRICES_IN_WEI = bytes.fromhex("41b247a8")  # getPricesInWei()
PERCENTILES = (10, 50, 90)
KB = 1024


@dataclass(frozen=True, slots=True)
class ArbitrumPrices:
    """ArbGasInfo.getPricesInWei(), in wei."""

    per_l2_tx: int
    per_l1_calldata_byte: int
    per_storage_allocation: int
    per_arb_gas_base: int
    per_arb_gas_congestion: int
    per_arb_gas_total: int

    @classmethod
    def decode(cls, data: bytes) -> ArbitrumPrices:
        words = decode(["uint256"] * 6, data)
        return cls(*(int(w) for w in words))


@dataclass(frozen=True, slots=True)
class GasQuote:
    chain: str
    block_number: int
    base_fee_wei: int
    next_base_fee_wei: int | None  # None: the chain's rule gives no prediction (see base_fee_rule)
    priority_fee_p10: int
    priority_fee_p50: int
    priority_fee_p90: int
    l1_fee_model: L1FeeModel
    l1_data_fee_wei_per_kb: int | None
    updated_at: str
    base_fee_rule: str = ""
    l1_fee_reason: str | None = None
    l1_fee_included_in_gas: bool = False

    def to_json(self) -> dict[str, Any]:
        """The GasQuote of docs/contracts.md (amounts as decimal strings), plus explanations."""
        return {
            "chain": self.chain,
            "block_number": self.block_number,
            "base_fee_wei": str(self.base_fee_wei),
            "next_base_fee_wei": _dec(self.next_base_fee_wei),
            "priority_fee_wei": {
                "p10": str(self.priority_fee_p10),
                "p50": str(self.priority_fee_p50),
                "p90": str(self.priority_fee_p90),
            },
            "l1_fee_model": self.l1_fee_model,
            "l1_data_fee_wei_per_kb": _dec(self.l1_data_fee_wei_per_kb),
            "updated_at": self.updated_at,
            "base_fee_rule": self.base_fee_rule,
            "l1_fee_reason": self.l1_fee_reason,
            "l1_fee_included_in_gas": self.l1_fee_included_in_gas,
        }


def _dec(value: int | None) -> str | None:
    return None if value is None else str(value)


def priority_percentiles(fee_history: dict[str, Any]) -> tuple[int, int, int]:
    """Median over non-empty blocks of each block's p10/p50/p90 reward (0s when all are empty)."""
    rewards = fee_history.get("reward") or []
    ratios = fee_history.get("gasUsedRatio") or []
    columns: list[list[int]] = [[] for _ in PERCENTILES]
    for index, row in enumerate(rewards):
        if index < len(ratios) and not ratios[index]:
            continue
        for column, value in zip(columns, row, strict=False):
            column.append(int(value, 16))
    p10, p50, p90 = (median_low(c) if c else 0 for c in columns)
    return p10, p50, p90


def parent_header(block: dict[str, Any]) -> ParentHeader:
    return ParentHeader(
        number=int(block["number"], 16),
        timestamp=int(block["timestamp"], 16),
        gas_used=int(block["gasUsed"], 16),
        gas_limit=int(block["gasLimit"], 16),
        base_fee=int(block.get("baseFeePerGas") or "0x0", 16),
        extra_data=bytes.fromhex(str(block.get("extraData", "0x"))[2:]),
    )


@dataclass
class GasOracle:
    chain: str
    rpc: JsonRpc
    chain_id: int
    rule_kind: RuleKind | None = None  # None: decide from the node and chain id
    l1_model: L1FeeModel | Literal["auto"] = "auto"
    window: int = 20
    publish: Publisher | None = None
    rule: BaseFeeRule | None = field(default=None, init=False)
    model: L1FeeModel = field(default="none", init=False)
    model_reason: str | None = field(default=None, init=False)
    fjord: bool = field(default=False, init=False)
    last: GasQuote | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    async def detect(self) -> None:
        """Choose the base-fee rule and the L1 fee model from what the node actually runs."""
        client_version: str | None = None
        with contextlib.suppress(RpcError):
            client_version = str(await self.rpc.request("web3_clientVersion", []))
        self.rule = rule_for(self.chain_id, client_version, self.rule_kind)
        if self.l1_model == "none":
            self.model, self.model_reason = "none", "configured: no L1 data fee"
            return
        reasons: list[str] = []
        if self.l1_model in ("auto", "op_stack"):
            code = await self.rpc.request("eth_getCode", [OP_GAS_PRICE_ORACLE, "latest"])
            if code not in (None, "0x", ""):
                self.model, self.model_reason = "op_stack", None
                fjord = await self._call(OP_GAS_PRICE_ORACLE, _SEL_IS_FJORD)
                self.fjord = fjord is not None and int.from_bytes(fjord, "big") == 1
                return
            reasons.append(f"no GasPriceOracle code at {OP_GAS_PRICE_ORACLE}")
        if self.l1_model in ("auto", "arbitrum"):
            answer = await self._call(ARB_GAS_INFO, _SEL_GET_PRICES_IN_WEI)
            if answer is not None and len(answer) == 6 * 32:
                self.model, self.model_reason = "arbitrum", None
                return
            reasons.append(f"no ArbGasInfo answer at {ARB_GAS_INFO}")
        self.model = "none"
        self.model_reason = "; ".join(reasons) or "no L1 fee contract"

    async def _call(self, to: str, data: bytes) -> bytes | None:
        try:
            result = await self.rpc.request(
                "eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"]
            )
        except RpcResponseError:
            return None
        if not isinstance(result, str) or len(result) <= 2:
            return None
        return bytes.fromhex(result[2:])

    async def quote(self, block: dict[str, Any] | None = None) -> GasQuote:
        """A fresh quote for ``block`` (default: the latest), published when a publisher is set."""
        if self.rule is None:
            await self.detect()
        assert self.rule is not None
        calls: list[tuple[str, list[Any]]] = [
            ("eth_feeHistory", [hex(self.window), "latest", list(PERCENTILES)])
        ]
        if block is None:
            calls.append(("eth_getBlockByNumber", ["latest", False]))
        answers: list[Any] = []
        for answer in await self.rpc.batch(calls):
            if isinstance(answer, RpcError):
                raise answer
            answers.append(answer)
        history: dict[str, Any] = answers[0]
        if block is None:
            block = answers[1]
        if block is None:
            raise RpcResponseError(-1, f"chain {self.chain}: node returned no latest block")
        parent = parent_header(block)
        p10, p50, p90 = priority_percentiles(history)
        per_kb, included = await self._l1_per_kb()
        quote = GasQuote(
            chain=self.chain,
            block_number=parent.number,
            base_fee_wei=parent.base_fee,
            next_base_fee_wei=self.rule.next_base_fee(parent),
            priority_fee_p10=p10,
            priority_fee_p50=p50,
            priority_fee_p90=p90,
            l1_fee_model=self.model,
            l1_data_fee_wei_per_kb=per_kb,
            updated_at=utc_now_iso(),
            base_fee_rule=f"{self.rule.kind}: {self.rule.reason}",
            l1_fee_reason=self.model_reason,
            l1_fee_included_in_gas=included,
        )
        self.last = quote
        if self.publish is not None:
            await self.publish(EventName.GAS_PRICE, self.chain, quote.to_json())
        return quote

    async def _l1_per_kb(self) -> tuple[int | None, bool]:
        if self.model == "op_stack":
            if self.fjord:
                data = _SEL_GET_L1_FEE_UPPER_BOUND + encode(["uint256"], [KB])
            else:
                data = _SEL_GET_L1_FEE + encode(["bytes"], [b"\xff" * KB])
            answer = await self._call(OP_GAS_PRICE_ORACLE, data)
            return (int.from_bytes(answer, "big") if answer else None), False
        if self.model == "arbitrum":
            answer = await self._call(ARB_GAS_INFO, _SEL_GET_PRICES_IN_WEI)
            if answer is None:
                return None, True
            return ArbitrumPrices.decode(answer).per_l1_calldata_byte * KB, True
        return None, False

    async def l1_fee(self, unsigned_tx: bytes) -> int | None:
        """The L1 data fee to add to gas × price for this exact (RLP, unsigned) transaction.

        0 on Arbitrum (already inside the gas), None without a model (unknown, not zero).
        """
        if self.rule is None:
            await self.detect()
        if self.model == "op_stack":
            answer = await self._call(
                OP_GAS_PRICE_ORACLE, _SEL_GET_L1_FEE + encode(["bytes"], [unsigned_tx])
            )
            return int.from_bytes(answer, "big") if answer else None
        if self.model == "arbitrum":
            return 0
        return None

    async def start(self, poll_interval: float) -> GasOracle:
        if self._task is None:
            self._task = asyncio.create_task(self._run(poll_interval), name=f"gas-{self.chain}")
        return self

    async def _run(self, poll_interval: float) -> None:
        seen: int | None = None
        while True:
            try:
                number = int(await self.rpc.request("eth_blockNumber", []), 16)
                if number != seen:
                    await self.quote()
                    seen = number
            except RpcError as exc:
                log.warning("chain %s: gas quote failed: %s", self.chain, exc)
            await asyncio.sleep(poll_interval)  # polling cadence for new blocks

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
