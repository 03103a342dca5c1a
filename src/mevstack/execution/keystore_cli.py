"""``mevstack key new|import|address``: creating, importing and showing the operator keystore.

The private key only ever lives in memory and in the encrypted v3 keystore: it is read from
stdin (never argv), never printed, logged or put into an error message.  The keystore is written
atomically with mode 0600 and an existing one is never overwritten.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from eth_account import Account
from eth_utils.address import to_checksum_address

from mevstack.config import Settings
from mevstack.execution.keys import KeystoreError

_MIN_PASSWORD = 8


def _password(settings: Settings, environ: Mapping[str, str]) -> str:
    var = settings.execution.password_env
    password = environ.get(var)
    if password is None:
        raise KeystoreError(
            f"environment variable {var} is not set: it holds the keystore password"
        )
    if len(password) < _MIN_PASSWORD:
        raise KeystoreError(f"the password in {var} is too short (at least {_MIN_PASSWORD} chars)")
    return password


def _write_keystore(path: Path, key: bytes, password: str) -> str:
    if path.exists():
        raise KeystoreError(f"keystore {path} already exists; refusing to overwrite it")
    document = Account.encrypt(key, password)
    address = to_checksum_address("0x" + str(document["address"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        # link() fails if the target appeared meanwhile, unlike rename(): never overwrite.
        os.link(tmp, path)
    except FileExistsError:
        raise KeystoreError(f"keystore {path} already exists; refusing to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)
    return address


def key_new(settings: Settings, environ: Mapping[str, str]) -> str:
    """Create a fresh random key in ``execution.keystore``; returns its address."""
    password = _password(settings, environ)
    return _write_keystore(Path(settings.execution.keystore), secrets.token_bytes(32), password)


def parse_private_key(text: str) -> bytes:
    """32 key bytes from one line of hex (with or without 0x); errors never echo the input."""
    cleaned = text.strip().removeprefix("0x").removeprefix("0X")
    if len(cleaned) != 64:
        raise KeystoreError("private key: expected 64 hex digits (32 bytes) on stdin")
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise KeystoreError("private key: not hexadecimal") from None
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    if not 0 < int.from_bytes(key, "big") < order:
        raise KeystoreError("private key: out of range for secp256k1")
    return key


def key_import(settings: Settings, environ: Mapping[str, str], stdin: TextIO) -> str:
    """Encrypt the private key read from ``stdin`` into ``execution.keystore``; its address."""
    password = _password(settings, environ)
    key = parse_private_key(stdin.readline())
    return _write_keystore(Path(settings.execution.keystore), key, password)


def key_address(settings: Settings) -> str:
    """The keystore's address, read from its public ``address`` field (no password needed)."""
    path = Path(settings.execution.keystore)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeystoreError(
            f"operator keystore {path} not found (create one with `mevstack key new`)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KeystoreError(f"operator keystore {path} cannot be read: {exc}") from None
    raw = document.get("address") if isinstance(document, dict) else None
    if not isinstance(raw, str):
        raise KeystoreError(f"keystore {path} has no address field")
    try:
        return to_checksum_address(raw if raw.startswith("0x") else "0x" + raw)
    except ValueError:
        raise KeystoreError(f"keystore {path} has a malformed address field") from None
