"""Typed errors of the market layer: contract reverts reproduced by the pool math, bad updates.

Each error mirrors what the contract would do (revert with a short code) so a quote that the chain
would refuse is refused here too, with one clear line.
"""

from __future__ import annotations

from mevstack.errors import MevstackError


class MarketError(MevstackError):
    """Base of every error of the market layer."""


class MathRevert(MarketError):
    """The contract would revert (overflow, underflow, division by zero or a require)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"pool math reverts ({code}){': ' + detail if detail else ''}")
        self.code = code


class InsufficientLiquidity(MathRevert):
    """The pool cannot provide the requested amount (V2 INSUFFICIENT_LIQUIDITY and friends)."""


class StaleUpdate(MarketError):
    """An update belongs to an older block than the state it would replace."""


class RollbackTooDeep(MarketError):
    """A rollback reaches further back than the kept history of state versions."""


class DecodeError(MarketError):
    """A log or call result does not have the shape its ABI promises."""
