"""Loading the operator key from its eth-account v3 keystore (password from an env variable).

Key management proper (creating and importing keystores) is ``mevstack key``'s job; this module
only opens the configured keystore, and every way that can fail is one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from mevstack.config import Settings
from mevstack.errors import MevstackError


class KeystoreError(MevstackError):
    """The operator keystore is missing, unreadable or its password is wrong."""


def load_operator_account(
    settings: Settings, *, environ: Mapping[str, str] | None = None
) -> LocalAccount:
    """The operator from ``execution.keystore``, decrypted with ``execution.password_env``."""
    env = os.environ if environ is None else environ
    path = Path(settings.execution.keystore)
    var = settings.execution.password_env
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeystoreError(
            f"operator keystore {path} not found (execution.keystore; create one with "
            "`mevstack key new` or `mevstack key import`)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KeystoreError(f"operator keystore {path} cannot be read: {exc}") from None
    password = env.get(var)
    if password is None:
        raise KeystoreError(
            f"environment variable {var} is not set: it holds the password of keystore {path}"
        )
    try:
        key = Account.decrypt(raw, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeystoreError(f"wrong password for keystore {path} (from {var})") from None
        raise KeystoreError(f"keystore {path} is not a valid v3 keystore: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise KeystoreError(f"keystore {path} is not a valid v3 keystore: missing {exc}") from None
    account: LocalAccount = Account.from_key(key)
    return account
