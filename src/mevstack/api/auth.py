"""Authentication and authorisation: API tokens, scopes and short-lived session tokens.

* API tokens come from the config (``[[auth.tokens]]``, SHA-256 digests only) and from the
  database store (``mevstack token create``, see ``api/store_view.py``); the plain token is
  never stored or logged.  Every presented token is hashed and compared with *every* known
  digest through ``hmac.compare_digest``, so the time does not depend on where a digest differs.
* Session tokens (what the dashboard's login returns) are our own minimal format with one pinned
  algorithm, HMAC-SHA256: ``mvs1.<base64url(json payload)>.<base64url(mac)>``.  The version
  prefix *is* the algorithm: there is no header a client could use to pick another one.  The
  payload carries the token name, its scopes, issue and expiry times (Unix seconds).
* The signing secret lives in the state dir (``session.key``), generated once with mode 0600.

Errors are :class:`AuthError` (401: missing, malformed, wrong or expired) and
:class:`ForbiddenError` (403: valid but without the scope); their messages never contain the
token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

from mevstack import jsonsafe
from mevstack.config import AuthToken
from mevstack.errors import ConfigError, MevstackError

Scope = Literal["read", "trade", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
audit_log = logging.getLogger("mevstack.audit")

SESSION_PREFIX = "mvs1"
API_TOKEN_PREFIX = "mvt_"
DEFAULT_SESSION_TTL_S = 3600
SECRET_FILE = "session.key"
_MAX_TOKEN_LEN = 4096
# Same rule as the names of [[auth.tokens]] in the config, so both sources look alike.
_TOKEN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class AuthError(MevstackError):
    """The request carries no usable credentials (HTTP 401)."""

    status = 401
    code = "unauthorized"


class ForbiddenError(AuthError):
    """The credentials are valid but lack the scope the endpoint needs (HTTP 403)."""

    status = 403
    code = "forbidden"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's name and scopes (``anonymous`` under ``public_read``)."""

    name: str
    scopes: frozenset[str]
    kind: Literal["api_token", "session", "anonymous"]
    expires_at: int | None = None

    def allows(self, scope: str) -> bool:
        # admin implies every scope; trade implies read.
        if "admin" in self.scopes:
            return True
        if scope == "read":
            return bool(self.scopes & {"read", "trade"})
        return scope in self.scopes


ANONYMOUS_READER = Principal(name="anonymous", scopes=frozenset({"read"}), kind="anonymous")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A known API token: its name, scopes and the SHA-256 hex digest of the plain token."""

    name: str
    scopes: tuple[str, ...]
    sha256: str


class TokenStore(Protocol):
    """Where minted tokens live (the ``api_tokens`` table of the database store)."""

    async def api_tokens(self) -> list[TokenRecord]: ...

    async def add_api_token(self, record: TokenRecord) -> None: ...


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint_token() -> str:
    """A fresh API token: 256 random bits, URL-safe, with a recognisable prefix."""
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"read,trade"`` → ``("read", "trade")``; an unknown or empty scope is a ConfigError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = [s.strip() for s in items if s.strip()]
    if not scopes:
        raise ConfigError("scopes: give at least one of read, trade, admin")
    bad = sorted({s for s in scopes if s not in SCOPES})
    if bad:
        raise ConfigError(f"scopes: unknown scope {bad[0]!r} (use read, trade, admin)")
    return tuple(dict.fromkeys(scopes))


def records_from_config(tokens: Sequence[AuthToken]) -> list[TokenRecord]:
    return [TokenRecord(t.name, tuple(t.scopes), t.sha256) for t in tokens]


def load_or_create_secret(state_dir: str | os.PathLike[str]) -> bytes:
    """The session signing secret: created once (0600, never overwritten), then read back."""
    directory = Path(state_dir)
    path = directory / SECRET_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32).hex().encode())
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"session secret {path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        raw = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"session secret {path} cannot be read or created: {exc}") from None
    try:
        secret = bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"session secret {path} is corrupt (expected hex); delete it") from None
    if len(secret) < 32:
        raise ConfigError(f"session secret {path} is too short; delete it to regenerate")
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and verifies HMAC-SHA256 session tokens."""

    def __init__(
        self,
        secret: bytes,
        *,
        ttl_s: int = DEFAULT_SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 32:
            raise ConfigError("session secret must be at least 32 bytes")
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._secret, f"{SESSION_PREFIX}.{body}".encode(), hashlib.sha256).digest()

    def issue(self, principal: Principal, ttl_s: int | None = None) -> tuple[str, int]:
        now = int(self._clock())
        expires = now + (self.ttl_s if ttl_s is None else ttl_s)
        payload = {
            "sub": principal.name,
            "scp": sorted(principal.scopes),
            "iat": now,
            "exp": expires,
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        # who logged in, never the token itself
        audit_log.info(
            "session issued to %s",
            principal.name,
            extra={
                "actor": principal.name,
                "action": "auth.login",
                "details": {"scopes": sorted(principal.scopes), "expires": expires},
            },
        )
        return f"{SESSION_PREFIX}.{body}.{_b64(self._mac(body))}", expires

    def verify(self, token: str) -> Principal:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != SESSION_PREFIX:
            raise AuthError("malformed session token")
        _, body, mac = parts
        try:
            given = _unb64(mac)
        except ValueError:
            raise AuthError("malformed session token") from None
        if not hmac.compare_digest(given, self._mac(body)):
            raise AuthError("invalid session token")
        try:
            payload = jsonsafe.loads(_unb64(body))
            name, scopes, expires = payload["sub"], payload["scp"], payload["exp"]
        except (ValueError, KeyError, TypeError):
            raise AuthError("malformed session token") from None
        if not (isinstance(name, str) and isinstance(scopes, list) and isinstance(expires, int)):
            raise AuthError("malformed session token")
        if expires <= self._clock():
            raise AuthError("session token expired; log in again")
        return Principal(name, frozenset(map(str, scopes)), "session", expires)


class Authenticator:
    """Turns a presented token (API or session) into a Principal and checks scopes."""

    def __init__(
        self,
        *,
        config_tokens: Sequence[TokenRecord] = (),
        store: TokenStore | None = None,
        signer: SessionSigner,
        public_read: bool = False,
    ) -> None:
        self._config_tokens = list(config_tokens)
        self._store = store
        self.signer = signer
        self.public_read = public_read

    async def _known(self) -> list[TokenRecord]:
        known = list(self._config_tokens)
        if self._store is not None:
            known.extend(await self._store.api_tokens())
        return known

    async def api_token(self, token: str) -> Principal:
        """The principal of a plain API token (AuthError when unknown)."""
        digest = hash_token(token).encode()
        found: TokenRecord | None = None
        for record in await self._known():
            # No early exit: every digest is compared, whatever matched before.
            if hmac.compare_digest(digest, record.sha256.encode()) and found is None:
                found = record
        if found is None:
            raise AuthError("invalid API token")
        return Principal(found.name, frozenset(found.scopes), "api_token")

    async def authenticate(self, token: str | None) -> Principal | None:
        """None when no token is given; AuthError when one is given and is not valid."""
        if token is None or token == "":
            return None
        if len(token) > _MAX_TOKEN_LEN or not token.isascii():
            raise AuthError("malformed token")
        if token.startswith(SESSION_PREFIX + "."):
            return self.signer.verify(token)
        return await self.api_token(token)

    async def require(self, token: str | None, scope: str) -> Principal:
        """The caller's principal if it may use ``scope`` (read may be public)."""
        principal = await self.authenticate(token)
        if principal is None:
            if scope == "read" and self.public_read:
                return ANONYMOUS_READER
            raise AuthError(f"authentication required (scope {scope!r}): send a Bearer token")
        if not principal.allows(scope):
            raise ForbiddenError(f"token {principal.name!r} lacks the {scope!r} scope")
        return principal


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (AuthError if malformed)."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()


async def create_token(
    store: TokenStore, name: str, scopes: str | Iterable[str]
) -> tuple[str, TokenRecord]:
    """Mint a token, store its digest, and return the plain token (shown once) and record."""
    if not _TOKEN_NAME_RE.match(name):
        raise ConfigError(
            f"--name: {name!r} is not a valid name (lowercase letters, digits, '-' and '_', max 64)"
        )
    token = mint_token()
    record = TokenRecord(name, parse_scopes(scopes), hash_token(token))
    await store.add_api_token(record)
    return token, record
