"""The request path as the gateway judges and forwards it: checked, decoded, re-encoded.

Pure functions.  The gateway must see exactly the path the engine will route on, or a request
could pass the gateway's scope check as one endpoint and reach the engine as another.  So:

* the path is taken *raw* (as the client sent it, percent-escapes intact) and split on ``/``
  before anything is decoded;
* a segment that decodes to ``.`` or ``..``, or that holds an encoded ``/`` or ``\\``, a control
  character or bytes that are not UTF-8, is refused (:class:`BadPath`): such a segment means
  something different to each URL normaliser on the way (``..%2F`` became ``../`` and then a
  step up the tree; ``%23`` ended the path as a fragment);
* every decoded segment is re-encoded on its own for forwarding, so ``#``, ``?``, ``%`` and
  spaces stay data inside their segment.

The decoded form (what the engine's router will see) decides the scope; the encoded form is what
travels to the engine and keys the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

# RFC 3986 pchar minus '%': characters a path segment may carry unescaped.
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"


class BadPath(ValueError):
    """The path cannot be forwarded unambiguously (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Target:
    decoded: str  # what the engine routes on
    encoded: str  # what is sent to the engine


def _segment(raw: bytes) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("path segment is not UTF-8") from None
    if text in (".", ".."):
        raise BadPath("dot segments ('.', '..') are not allowed in a path")
    if "/" in text or "\\" in text:
        raise BadPath("an encoded '/' or '\\' is not allowed in a path segment")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        raise BadPath("control characters are not allowed in a path")
    return text


def normalise(raw_path: bytes) -> Target:
    """The checked path of a request; ``raw_path`` as the client sent it (query ignored)."""
    raw = raw_path.partition(b"?")[0]
    if not raw.startswith(b"/") or not raw.isascii():
        raise BadPath("the path must be ASCII and start with '/'")
    decoded = [_segment(part) for part in raw.split(b"/")]
    return Target(
        decoded="/".join(decoded),
        encoded="/".join(quote(part, safe=_SEGMENT_SAFE) for part in decoded),
    )
