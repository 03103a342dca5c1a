"""Structured logging: one JSON object per line, with secrets redacted before anything is written.

``configure_logging(level, json=True)`` installs one handler on the root logger.  Each record
becomes ``{"ts", "level", "logger", "msg", ...extra fields}``; exceptions go in ``exc``.  A
request id bound with ``request_context(rid)`` (the gateway passes one to the engine) is added
as ``request_id`` to every record logged inside that context, across awaits.

Redaction runs as a filter on the handler, so it covers every library that logs through the
standard ``logging`` module, not only mevstack's own code.  It removes:

* anything that looks like a 32-byte hex private key (64 hex digits, with or without ``0x``);
* bearer tokens (``Bearer <token>``) and mevstack API / session tokens (``mvt_...``,
  ``mvs1....``) wherever they appear;
* credentials in URLs (``scheme://user:pass@host`` becomes ``scheme://***@host``);
* the whole value of an extra field whose name says it is a secret (``password``,
  ``api_token``...); a field named just ``token`` is an ERC-20 address in mevstack and is kept.

A transaction or block hash has the same shape as a private key, so free text cannot tell them
apart and both are redacted there; hashes that must stay readable go in extra fields named
``*_hash`` / ``*_hashes`` (``tx_hash``, ``block_hash``), which are exempt from the key rule.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

REDACTED = "***"

request_id_var: ContextVar[str | None] = ContextVar("mevstack_request_id", default=None)


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Tag every record logged in this context (this task and what it awaits) with the id."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


_PRIVATE_KEY_RE = re.compile(r"(?<![0-9a-fA-Fx])(?:0x)?[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/=]+")
_URL_CREDS_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@]*:[^/\s@]*@")
# mevstack's own API tokens (``mvt_...``) and session tokens (``mvs1.<body>.<mac>``).
_MEVSTACK_TOKEN_RE = re.compile(r"\b(mvt_|mvs1\.)[A-Za-z0-9\-_.]{8,}")
# A field called just "token" is usually an ERC-20 address here, so only credential-like names.
_SECRET_FIELD_RE = re.compile(
    r"(?i)(password|passwd|secret|private_?key|api_?key|authorization|cookie"
    r"|(api|auth|session|access|refresh|bearer)_?token)"
)
_HASH_FIELD_RE = re.compile(r"(?i)(^|_)(hash|hashes)$")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.  uvicorn adds
# ``color_message``, the message again with terminal colour codes: never written.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName", "color_message"}


def redact_text(text: str, *, keep_hashes: bool = False) -> str:
    """``text`` with private keys, bearer tokens and URL credentials replaced by ``***``."""
    text = _URL_CREDS_RE.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _MEVSTACK_TOKEN_RE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    if not keep_hashes:
        text = _PRIVATE_KEY_RE.sub(REDACTED, text)
    return text


def redact_value(value: Any, *, field: str = "") -> Any:
    """A copy of ``value`` (str, list, dict, nested) with secrets redacted by content and key."""
    if field and _SECRET_FIELD_RE.search(field) and not _HASH_FIELD_RE.search(field):
        return REDACTED if value not in (None, "") else value
    keep_hashes = bool(field) and bool(_HASH_FIELD_RE.search(field))
    if isinstance(value, str):
        return redact_text(value, keep_hashes=keep_hashes)
    if isinstance(value, Mapping):
        return {str(k): redact_value(v, field=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, field=field) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites each record in place so no handler after it ever sees a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        for key in list(vars(record)):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, redact_value(getattr(record, key), field=key))
        return True


def _iso(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | bool | float) or value is None:
        return value
    if isinstance(value, int):
        # JSON numbers cannot carry a uint256 exactly through most readers; wei stay strings.
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, the extra fields, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            doc["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in doc:
                doc[key] = _jsonable(value)
        if record.exc_info:
            doc["exc"] = redact_text(self.formatException(record.exc_info))
        return jsonlib.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return redact_text(super().formatException(ei))


_HANDLER_MARK = "_mevstack_handler"


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time, not the object it was when configured.

    A process that swaps stderr (a test harness capturing output, a daemon redirecting it) would
    otherwise keep logging into a closed stream.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(
    level: str | int = "INFO", *, json: bool = True, stream: TextIO | None = None
) -> logging.Handler:
    """Route the root logger through one redacting handler; calling it again replaces it."""
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            from mevstack.errors import ConfigError

            raise ConfigError(f"unknown log level {level!r} (use debug, info, warning or error)")
        level = resolved
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler: logging.StreamHandler = (  # type: ignore[type-arg]
        logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler()
    )
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json else _TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO: at our request rates that drowns everything else.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
    # uvicorn's own logging set-up (any server started with its default log_config) gives its
    # loggers handlers of their own and stops them propagating: its lines would bypass the
    # redaction and the JSON format.  They go through the root handler like everything else.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        server_log = logging.getLogger(name)
        server_log.handlers.clear()
        server_log.propagate = True
        server_log.setLevel(logging.NOTSET)
    return handler
