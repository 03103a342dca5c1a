"""Typed errors of the chain layer: what a JSON-RPC node can do wrong, as exceptions.

Every error is a ``MevstackError`` with one line that never contains URL credentials (callers pass
URLs through :func:`mevstack.chain.redact.redact_url` before they reach a message).  Endpoint
failures (transport down, timeout, rate limit) are what the endpoint pool fails over on; node
answers about the request itself (revert, unknown block, other JSON-RPC errors) are not.
"""

from __future__ import annotations

from mevstack.errors import MevstackError

_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


class RpcError(MevstackError):
    """Base of every error a JSON-RPC call can raise."""


class RpcTransportError(RpcError):
    """The endpoint could not be reached or answered something that is not JSON-RPC."""


class RpcTimeout(RpcTransportError):
    """The endpoint did not answer within the call's timeout."""


class RpcRateLimited(RpcError):
    """The endpoint refused the call because of a rate limit (HTTP 429 or a rate-limit code)."""


class RpcResponseError(RpcError):
    """The node answered with a JSON-RPC error object not covered by a narrower class."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code = code
        self.message = message


class ExecutionReverted(RpcResponseError):
    """The call or gas estimate reverted; ``data`` is the raw revert data, ``reason`` decoded."""

    def __init__(self, data: bytes, reason: str | None, code: int = 3, message: str = "") -> None:
        RpcError.__init__(self, f"execution reverted: {reason}" if reason else "execution reverted")
        self.code = code
        self.message = message or "execution reverted"
        self.data = data
        self.reason = reason


class UnknownBlock(RpcResponseError):
    """The node does not know the block the call referred to (not yet seen, or pruned)."""


def decode_revert_reason(data: bytes) -> str | None:
    """The human-readable reason of revert data: ``Error(string)``, ``Panic(uint256)`` or None."""
    if data[:4] == _ERROR_STRING_SELECTOR and len(data) >= 4 + 64:
        body = data[4:]
        offset = int.from_bytes(body[0:32], "big")
        if offset + 32 > len(body):
            return None
        length = int.from_bytes(body[offset : offset + 32], "big")
        raw = body[offset + 32 : offset + 32 + length]
        if len(raw) != length:
            return None
        return raw.decode("utf-8", errors="replace")
    if data[:4] == _PANIC_SELECTOR and len(data) == 4 + 32:
        return f"panic 0x{int.from_bytes(data[4:], 'big'):02x}"
    return None
