"""Credential stripping for node URLs: the only form of a URL that may reach status, logs or errors.

Providers put secrets in three places: user-info (``https://user:pass@host``), the path
(``/v3/<key>``, ``/v2/<key>``) and the query (``?apikey=...``).  All three are masked; scheme, host
and port stay so an operator can still tell endpoints apart.  Libraries that log request URLs
themselves (httpx logs every request at INFO) get a filter that applies the same redaction.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

# A path segment this long made only of key characters is an API key, not a route name.
_KEYLIKE_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]{16,}$")
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with user-info, key-like path segments and query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    path = "/".join(
        MASK if _KEYLIKE_SEGMENT.match(segment) else segment for segment in parts.path.split("/")
    )
    query = "&".join(
        f"{pair.split('=', 1)[0]}={MASK}" if "=" in pair else MASK
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
# Libraries that write request URLs into their own log lines (httpx at INFO for every request).
_LIBRARY_LOGGERS = ("httpx", "httpcore", "websockets")


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)


class RedactingFilter(logging.Filter):
    """Rewrites URLs in a log record's message and arguments to their redacted form."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        return True


def _redact_arg(arg: object) -> object:
    # httpx passes its URL objects, not strings; anything that prints as a URL is redacted.
    if isinstance(arg, str) or type(arg).__name__ == "URL":
        text = str(arg)
        if _URL_IN_TEXT.search(text):
            return redact_text(text)
    return arg


def install_log_redaction() -> None:
    """Attach the filter to the HTTP/WebSocket libraries' loggers (idempotent)."""
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
