"""The next block's base fee, exactly as each chain's consensus rule computes it (pure integers).

Which rule applies is a fact about the chain *and its fork*, and on a devnet about the node:

* **Ethereum** (London onwards): EIP-1559 with max-change denominator 8 and elasticity 2.
* **OP stack** (OP Mainnet, Base and other superchain members): EIP-1559 with denominator 50 and
  elasticity 6 from Bedrock, denominator 250 from Canyon; from Holocene the parent header's
  ``extraData`` carries them (``0x00 || denominator u32 || elasticity u32``), and Jovian's
  17-byte form (version ``0x01``) appends a minimum base fee (u64) the result never goes below.
* **Arbitrum**: the base fee is set by ArbOS's own pricing (speed limit and backlog), not by
  EIP-1559: no prediction is made (``None``), the current value is reported as it is.
* **Polygon PoS** changed its parameters at several forks: not modelled, no prediction.
* **anvil** applies Ethereum's 8/2 to whatever chain id it runs, so a devnet follows its node, not
  its chain id (:func:`rule_for` takes the node's ``web3_clientVersion``).

Every computation mirrors go-ethereum / op-geth ``CalcBaseFee`` integer for integer: floor
divisions in the same order, an increase of at least 1 wei, a decrease never below zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RuleKind = Literal["ethereum", "op_stack", "arbitrum", "none"]

ETHEREUM_CHAIN_IDS = frozenset({1, 11155111, 17000, 560048})  # mainnet, sepolia, holesky, hoodi
OP_STACK_CHAIN_IDS = frozenset({10, 8453, 11155420, 84532, 7777777, 34443, 130, 480, 57073})
ARBITRUM_CHAIN_IDS = frozenset({42161, 42170, 421614})
# Polygon PoS changed its denominator at several hard forks; not modelled rather than guessed.
UNMODELLED_CHAIN_IDS = frozenset({137, 80002})

# OP Mainnet and Base activated each fork at the same timestamp.
CANYON_TIME = 1_704_992_401  # 2024-01-11T17:00:01Z
HOLOCENE_TIME = 1_736_445_601  # 2025-01-09T18:00:01Z


@dataclass(frozen=True, slots=True)
class Eip1559Params:
    denominator: int
    elasticity: int
    min_base_fee: int = 0


ETHEREUM_PARAMS = Eip1559Params(8, 2)
OP_BEDROCK_PARAMS = Eip1559Params(50, 6)
OP_CANYON_PARAMS = Eip1559Params(250, 6)


@dataclass(frozen=True, slots=True)
class ParentHeader:
    """The parent-block fields the rule reads."""

    number: int
    timestamp: int
    gas_used: int
    gas_limit: int
    base_fee: int
    extra_data: bytes = b""


@dataclass(frozen=True, slots=True)
class BaseFeeRule:
    kind: RuleKind
    reason: str  # why this rule: shown to operators next to the prediction

    def params_for(self, parent: ParentHeader) -> Eip1559Params | None:
        if self.kind == "ethereum":
            return ETHEREUM_PARAMS
        if self.kind == "op_stack":
            return op_stack_params(parent)
        return None

    def next_base_fee(self, parent: ParentHeader) -> int | None:
        """The child's base fee, or None where the chain has no EIP-1559 rule to apply."""
        params = self.params_for(parent)
        if params is None:
            return None
        return eip1559_next_base_fee(parent.base_fee, parent.gas_used, parent.gas_limit, params)


def eip1559_next_base_fee(
    base_fee: int, gas_used: int, gas_limit: int, params: Eip1559Params
) -> int:
    """EIP-1559's update rule with the given denominator/elasticity (geth's CalcBaseFee)."""
    target = gas_limit // params.elasticity
    if target == 0:
        return max(base_fee, params.min_base_fee)
    if gas_used == target:
        result = base_fee
    elif gas_used > target:
        delta = base_fee * (gas_used - target) // target // params.denominator
        result = base_fee + max(delta, 1)
    else:
        delta = base_fee * (target - gas_used) // target // params.denominator
        result = max(base_fee - delta, 0)
    return max(result, params.min_base_fee)


class ExtraDataError(ValueError):
    """A post-Holocene OP-stack header whose extraData is not a valid parameter encoding."""


def op_stack_params(parent: ParentHeader) -> Eip1559Params:
    """OP-stack parameters for the child of ``parent`` (by fork, or from its extraData)."""
    if parent.timestamp >= HOLOCENE_TIME or parent.extra_data[:1] in (b"\x00", b"\x01"):
        if parent.extra_data:
            params = decode_op_extra_data(parent.extra_data)
            if params.denominator and params.elasticity:
                return params
            # 0/0 means "the chain's defaults" (as op-geth and reth read it), floor kept.
            return Eip1559Params(
                OP_CANYON_PARAMS.denominator, OP_CANYON_PARAMS.elasticity, params.min_base_fee
            )
        if parent.timestamp >= HOLOCENE_TIME:
            raise ExtraDataError("Holocene header without EIP-1559 parameters in extraData")
    if parent.timestamp >= CANYON_TIME:
        return OP_CANYON_PARAMS
    return OP_BEDROCK_PARAMS


def decode_op_extra_data(extra: bytes) -> Eip1559Params:
    """Holocene (9 bytes, version 0) or Jovian (17 bytes, version 1) extraData parameters."""
    if len(extra) == 9 and extra[0] == 0:
        params = Eip1559Params(int.from_bytes(extra[1:5], "big"), int.from_bytes(extra[5:9], "big"))
    elif len(extra) == 17 and extra[0] == 1:
        params = Eip1559Params(
            int.from_bytes(extra[1:5], "big"),
            int.from_bytes(extra[5:9], "big"),
            int.from_bytes(extra[9:17], "big"),
        )
    else:
        raise ExtraDataError(f"unknown OP-stack extraData encoding: 0x{extra.hex()}")
    if (params.denominator == 0) != (params.elasticity == 0):
        raise ExtraDataError(f"half-zero EIP-1559 parameters in extraData 0x{extra.hex()}")
    return params


def rule_for(
    chain_id: int, client_version: str | None = None, kind: RuleKind | None = None
) -> BaseFeeRule:
    """The rule for a chain: an explicit ``kind`` wins, then the node software, then the chain id.

    anvil (and Hardhat) compute every chain's base fee with Ethereum's rule, so on a devnet the
    node decides: an "optimism" devnet on anvil still moves its base fee by 1/8.
    """
    if kind is not None:
        return BaseFeeRule(kind, "configured")
    version = (client_version or "").lower()
    if version.startswith(("anvil", "hardhat")):
        return BaseFeeRule("ethereum", f"devnet node {client_version} applies EIP-1559 8/2")
    if chain_id in ARBITRUM_CHAIN_IDS or version.startswith("nitro"):
        return BaseFeeRule("arbitrum", "ArbOS prices gas itself; no EIP-1559 prediction")
    if chain_id in UNMODELLED_CHAIN_IDS:
        return BaseFeeRule("none", f"chain {chain_id}: base-fee rule not modelled, no prediction")
    if chain_id in OP_STACK_CHAIN_IDS or "op-geth" in version or "op-reth" in version:
        return BaseFeeRule("op_stack", "OP stack: Canyon 250/6, extraData since Holocene")
    return BaseFeeRule("ethereum", "EIP-1559 London rule (8/2)")
