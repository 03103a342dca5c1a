"""The Flashbots ``X-Flashbots-Signature`` header: signing a request body and verifying one.

Rule (as the Flashbots relays check it): the header is ``<address>:<signature>`` where the
signature is an EIP-191 ``personal_sign`` of the *text* ``0x`` + hex keccak256 of the exact
request body bytes.  Signing the text of the hash, not the hash bytes, is what ethers'
``signMessage(id(body))`` does, and therefore what relays expect.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from mevstack.errors import MevstackError

HEADER = "X-Flashbots-Signature"


class RelaySignatureError(MevstackError):
    """A relay signature header is missing, malformed or does not match the body."""


def _message(body: bytes) -> str:
    return "0x" + keccak(body).hex()


def sign_body(account: LocalAccount, body: bytes) -> str:
    """The header value ``<checksummed address>:<0x signature>`` for exactly these body bytes."""
    signed = account.sign_message(encode_defunct(text=_message(body)))
    return f"{account.address}:0x{bytes(signed.signature).hex()}"


def verify_header(header: str | None, body: bytes) -> str:
    """The checksummed signer address if ``header`` signs ``body``; else RelaySignatureError."""
    if not header:
        raise RelaySignatureError(f"missing {HEADER} header")
    address, sep, signature = header.partition(":")
    if not sep or not address or not signature:
        raise RelaySignatureError(f"{HEADER}: expected <address>:<signature>")
    try:
        claimed = to_checksum_address(address)
        raw = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError:
        raise RelaySignatureError(f"{HEADER}: address or signature is not hex") from None
    if len(raw) != 65:
        raise RelaySignatureError(f"{HEADER}: signature must be 65 bytes, got {len(raw)}")
    try:
        recovered = Account.recover_message(encode_defunct(text=_message(body)), signature=raw)
    except Exception:  # any malformed signature is one kind of refusal
        raise RelaySignatureError(f"{HEADER}: signature cannot be recovered") from None
    if recovered != claimed:
        raise RelaySignatureError(f"{HEADER}: signature does not match {claimed}")
    return claimed
