"""Outside JSON: depth-bounded, exact integers, one error type."""

from __future__ import annotations

import pytest

from mevstack.jsonsafe import loads as parse_json

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_parse_json_is_bounded_and_exact() -> None:
    with pytest.raises(ValueError):
        parse_json(DEEP)
    # orjson alone would turn integers beyond 64 bits into floats: amounts must stay exact
    big = 123456789012345678901234567890
    assert parse_json(b'{"max_trade_wei": %d}' % big) == {"max_trade_wei": big}
    assert parse_json('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    # a long number inside a deep document: the exact re-parse fails cleanly too
    nested = b"[" * 1000 + b"1" * 30 + b"]" * 1000
    with pytest.raises(ValueError):
        parse_json(nested)
