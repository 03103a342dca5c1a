"""The few ABI pieces the market speaks in raw JSON-RPC: selectors, event topics, word decoding.

The hot path (thousands of logs per block) decodes 32-byte words straight from the hex strings
the node sends, which is several times faster than a general ABI decoder.
"""

from __future__ import annotations

import functools

from eth_utils.crypto import keccak

from mevstack.market.errors import DecodeError


def selector(signature: str) -> str:
    """The 4-byte selector of a function signature as 0x-hex."""
    return "0x" + keccak(text=signature)[:4].hex()


def topic(signature: str) -> str:
    """topic0 of an event signature as 0x-hex (lower case, as nodes send it)."""
    return "0x" + keccak(text=signature).hex()


def encode_uint(value: int) -> str:
    """One 32-byte word for a uint (no 0x)."""
    return format(value, "064x")


def encode_int(value: int) -> str:
    """One 32-byte two's-complement word for a signed int (no 0x)."""
    return format(value & ((1 << 256) - 1), "064x")


def call_data(sel: str, *words: str) -> str:
    return sel + "".join(words)


def words(data: str, count: int) -> list[int]:
    """The first ``count`` 32-byte words of 0x-hex ``data`` as unsigned ints."""
    body = data[2:] if data.startswith("0x") else data
    if len(body) < 64 * count:
        raise DecodeError(f"expected {count} ABI words, got {len(body) // 64}")
    return [int(body[64 * i : 64 * i + 64], 16) for i in range(count)]


def to_signed(value: int, bits: int = 256) -> int:
    """Interpret the low ``bits`` of ``value`` as a two's-complement integer."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def topic_int(topic_hex: str) -> int:
    """A signed indexed integer (int24 etc. are sign-extended to 256 bits in topics)."""
    return to_signed(int(topic_hex, 16))


@functools.lru_cache(maxsize=65_536)
def checksum(hex40: str) -> str:
    """EIP-55 form of a 40-hex-digit address (cached: the same tokens recur in every pool)."""
    lower = hex40.lower()
    digest = keccak(text=lower).hex()
    return "0x" + "".join(
        ch.upper() if ch > "9" and digest[i] > "7" else ch for i, ch in enumerate(lower)
    )


def topic_address(topic_hex: str) -> str:
    return checksum(topic_hex[-40:])


def word_address(value: int) -> str:
    return checksum(format(value & ((1 << 160) - 1), "040x"))
