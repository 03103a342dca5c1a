"""TickBitmap: which ticks are initialised, one bit per tick spacing, 256 ticks per word.

The bitmap is a mapping ``word position -> uint256 word`` (missing words are zero).  The search
never leaves the current word: when no initialised tick is found there, the word's last tick is
returned with ``initialized=False`` and the swap loop makes it a step boundary all the same.
"""

from __future__ import annotations

from collections.abc import Mapping

from mevstack.market.errors import MathRevert


def position(compressed: int) -> tuple[int, int]:
    """(word position, bit position) of a compressed tick (arithmetic shift, as int16/uint8)."""
    return compressed >> 8, compressed & 0xFF


def compress(tick: int, tick_spacing: int) -> int:
    """tick / tick_spacing rounded towards negative infinity, as the contract does."""
    return tick // tick_spacing


def next_initialized_tick_within_one_word(
    bitmap: Mapping[int, int], tick: int, tick_spacing: int, lte: bool
) -> tuple[int, bool]:
    """The next initialised tick at or left of (``lte``) / right of ``tick`` within one word."""
    compressed = tick // tick_spacing
    if lte:
        word_pos, bit_pos = compressed >> 8, compressed & 0xFF
        masked = bitmap.get(word_pos, 0) & ((1 << (bit_pos + 1)) - 1)
        if masked:
            msb = masked.bit_length() - 1
            return (compressed - (bit_pos - msb)) * tick_spacing, True
        return (compressed - bit_pos) * tick_spacing, False
    word_pos, bit_pos = (compressed + 1) >> 8, (compressed + 1) & 0xFF
    masked = (bitmap.get(word_pos, 0) >> bit_pos) << bit_pos
    if masked:
        lsb = (masked & -masked).bit_length() - 1
        return (compressed + 1 + (lsb - bit_pos)) * tick_spacing, True
    return (compressed + 1 + (255 - bit_pos)) * tick_spacing, False


def flip_tick(bitmap: dict[int, int], tick: int, tick_spacing: int) -> None:
    """TickBitmap.flipTick on a mutable bitmap (used when building a new state version)."""
    if tick % tick_spacing:
        raise MathRevert("TS", f"tick {tick} is not a multiple of spacing {tick_spacing}")
    word_pos, bit_pos = position(tick // tick_spacing)
    word = bitmap.get(word_pos, 0) ^ (1 << bit_pos)
    if word:
        bitmap[word_pos] = word
    else:
        bitmap.pop(word_pos, None)
