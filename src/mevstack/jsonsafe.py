"""Parsing JSON that comes from outside (HTTP bodies, feeds, peers) without risk to the process.

:func:`loads` bounds the nesting depth through orjson (``MAX_DEPTH``, built into orjson), so a
deeply nested document is an error instead of a stack exhausted in C.  orjson turns integers
beyond 64 bits into floats; amounts in wei often are that large, so a document holding such a
number is parsed again by the standard library, which keeps integers exact.  Every failure,
including that second parse running out of recursion, is a ``json.JSONDecodeError`` (a
``ValueError``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

MAX_DEPTH = 1024  # orjson's own limit, named here for messages and tests
# A JSON integer this long may not fit 64 bits.
_LONG_NUMBER = re.compile(rb"[0-9]{19,}")


def loads(data: bytes | str) -> Any:
    raw = data.encode() if isinstance(data, str) else data
    doc = orjson.loads(raw)
    if not _LONG_NUMBER.search(raw):
        return doc
    try:
        return json.loads(raw)
    except RecursionError:
        raise json.JSONDecodeError("document nested too deeply", raw.decode("latin-1"), 0) from None
