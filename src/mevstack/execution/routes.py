"""Submission routes: how a signed transaction reaches a block (public, private, bundle).

* ``public``: ``eth_sendRawTransaction`` to every healthy endpoint at once; "already known" for
  the same hash counts as accepted.
* ``private``: ``eth_sendRawTransaction`` to each configured relay (private RPCs).
* ``bundle``: Flashbots-style ``eth_sendBundle`` ``{txs, blockNumber}`` to each relay, signed with
  ``X-Flashbots-Signature``, retargeted to the next block until the watched transaction is
  included or ``expires_at_block`` has passed.  A backrun goes as ``[ahead raw txs..., trigger
  raw tx, backrun]``: the pending transactions it was priced behind, in block order, then its
  trigger, so a builder cannot run the trigger without them.  An ahead transaction mined in a
  block the bundle missed is left out of the retargeted bundle (it would make it invalid: its
  nonce is spent), keeping the order of the rest; the chain then holds it, as priced.

:class:`Submitter` ties a route to the nonce manager and the signer: reserve a nonce (exclusive
for bundles), sign behind the kill-switch gate and the lease fence, send, then commit the nonce if
it was consumed or release it if not.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
import orjson
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from mevstack.chain.errors import RpcError, RpcResponseError, RpcTransportError
from mevstack.chain.rpc import JsonRpc, error_from_object
from mevstack.errors import MevstackError
from mevstack.execution.lease import ExecutionLease
from mevstack.execution.nonces import NonceManager
from mevstack.execution.relay_signing import HEADER, sign_body
from mevstack.execution.trading_state import SigningGate

RouteKind = Literal["public", "private", "bundle"]
_ALREADY_KNOWN = ("alreadyknown", "knowntransaction", "alreadyimported")
_ids = itertools.count(1)


class SubmitError(MevstackError):
    """No endpoint or relay accepted the submission."""


def tx_hash(raw: str) -> str:
    return "0x" + keccak(bytes.fromhex(raw.removeprefix("0x"))).hex()


def _already_known(exc: BaseException) -> bool:
    if not isinstance(exc, RpcResponseError):
        return False
    lowered = exc.message.lower().replace(" ", "").replace("_", "")
    return any(word in lowered for word in _ALREADY_KNOWN)


def _accepted(outcome: object, expected: str) -> bool:
    if isinstance(outcome, str):
        return outcome.lower() == expected
    return isinstance(outcome, BaseException) and _already_known(outcome)


@dataclass(frozen=True, slots=True)
class SignedTx:
    raw: str
    hash: str
    nonce: int


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """``consumed``: the nonce is spent (broadcast publicly, or the bundle landed)."""

    route: RouteKind
    tx_hashes: tuple[str, ...]
    consumed: bool
    included_block: int | None = None
    attempts: int = 1
    errors: tuple[str, ...] = ()


class Route(Protocol):
    """Sends ``raws`` (in order) until ``watch`` is included; ``droppable``: hashes of ``raws``
    a bundle leaves out once they are mined (a backrun's ahead transactions)."""

    kind: RouteKind

    async def submit(
        self,
        raws: Sequence[str],
        *,
        watch: str,
        target_block: int,
        expires_at_block: int,
        droppable: Collection[str] = (),
    ) -> SubmitOutcome: ...


def backrun_public_fees(
    *, trigger_max_fee: int, trigger_priority_fee: int, base_fee: int
) -> tuple[int, int]:
    """EIP-1559 fees for a backrun sent publicly: its effective tip never exceeds the trigger's
    (blocks order by effective tip, then arrival), so it cannot be ordered in front of it."""
    trigger_tip = max(0, min(trigger_priority_fee, trigger_max_fee - base_fee))
    return base_fee + trigger_tip, trigger_tip


class PublicRoute:
    """``eth_sendRawTransaction`` to every given endpoint (the healthy ones) at once."""

    kind: RouteKind = "public"

    def __init__(self, endpoints: Sequence[JsonRpc]) -> None:
        if not endpoints:
            raise SubmitError("public route: no endpoint")
        self.endpoints = list(endpoints)

    async def send_raw(self, raw: str) -> str:
        expected = tx_hash(raw)
        outcomes = await asyncio.gather(
            *(e.request("eth_sendRawTransaction", [raw]) for e in self.endpoints),
            return_exceptions=True,
        )
        if any(_accepted(o, expected) for o in outcomes):
            return expected
        errors = "; ".join(str(o) for o in outcomes)
        raise SubmitError(f"public route: no endpoint accepted {expected}: {errors}")

    async def submit(
        self,
        raws: Sequence[str],
        *,
        watch: str,
        target_block: int,
        expires_at_block: int,
        droppable: Collection[str] = (),
    ) -> SubmitOutcome:
        hashes = tuple([await self.send_raw(raw) for raw in raws])
        return SubmitOutcome("public", hashes, consumed=True)


class _RelayClient:
    """JSON-RPC POSTs to relays, each body signed with ``X-Flashbots-Signature``."""

    def __init__(self, urls: Sequence[str], auth: LocalAccount, timeout: float) -> None:
        if not urls:
            raise SubmitError("this route needs at least one relay URL (chains.relays)")
        self.urls = list(urls)
        self.auth = auth
        self.http = httpx.AsyncClient(timeout=timeout)

    async def _post(self, url: str, method: str, params: list[Any]) -> Any:
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
        )
        headers = {"content-type": "application/json", HEADER: sign_body(self.auth, body)}
        try:
            response = await self.http.post(url, content=body, headers=headers)
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RpcTransportError(f"relay {url}: {type(exc).__name__}") from None
        if not isinstance(answer, dict):
            raise RpcTransportError(f"relay {url}: answer is not a JSON-RPC object")
        if answer.get("error") is not None:
            raise error_from_object(answer["error"])
        return answer.get("result")

    async def broadcast(self, method: str, params: list[Any]) -> list[Any]:
        return list(
            await asyncio.gather(
                *(self._post(url, method, params) for url in self.urls), return_exceptions=True
            )
        )

    async def aclose(self) -> None:
        await self.http.aclose()


class PrivateRoute:
    """``eth_sendRawTransaction`` to each private relay; accepted if any relay took it."""

    kind: RouteKind = "private"

    def __init__(self, relays: Sequence[str], auth: LocalAccount, *, timeout: float = 5.0) -> None:
        self.relays = _RelayClient(relays, auth, timeout)

    async def submit(
        self,
        raws: Sequence[str],
        *,
        watch: str,
        target_block: int,
        expires_at_block: int,
        droppable: Collection[str] = (),
    ) -> SubmitOutcome:
        hashes: list[str] = []
        for raw in raws:
            expected = tx_hash(raw)
            outcomes = await self.relays.broadcast("eth_sendRawTransaction", [raw])
            if not any(_accepted(o, expected) for o in outcomes):
                raise SubmitError(
                    f"private route: no relay accepted {expected}: "
                    + "; ".join(str(o) for o in outcomes)
                )
            hashes.append(expected)
        return SubmitOutcome("private", tuple(hashes), consumed=True)

    async def aclose(self) -> None:
        await self.relays.aclose()


class BundleRoute:
    """``eth_sendBundle`` to each relay, retargeted block by block until included or expired."""

    kind: RouteKind = "bundle"

    def __init__(
        self,
        relays: Sequence[str],
        auth: LocalAccount,
        chain: JsonRpc,
        *,
        block_time: float = 12.0,
        timeout: float = 5.0,
        fence: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.relays = _RelayClient(relays, auth, timeout)
        self.chain = chain
        self.block_time = block_time
        self.fence = fence

    async def send_bundle(self, raws: Sequence[str], block: int) -> list[Any]:
        """Per relay: its answer (``{"bundleHash": ...}``) or the RpcError it gave."""
        return await self.relays.broadcast(
            "eth_sendBundle", [{"txs": list(raws), "blockNumber": hex(block)}]
        )

    async def _head(self) -> int:
        return int(await self.chain.request("eth_blockNumber", []), 16)

    async def _wait_for_block(self, block: int) -> None:
        # generous: a missed slot or a slow devnet must not be mistaken for a lost bundle
        deadline = time.monotonic() + max(self.block_time, 1.0) * 3 + 5.0
        poll = min(max(self.block_time / 20, 0.01), 0.25)
        while await self._head() < block:
            if time.monotonic() > deadline:
                raise SubmitError(f"bundle route: block {block} did not arrive in time")
            await asyncio.sleep(poll)  # polling the head with a deadline

    async def _included_in(self, watch: str) -> int | None:
        receipt = await self.chain.request("eth_getTransactionReceipt", [watch])
        if isinstance(receipt, dict) and receipt.get("blockNumber"):
            return int(receipt["blockNumber"], 16)
        return None

    async def submit(
        self,
        raws: Sequence[str],
        *,
        watch: str,
        target_block: int,
        expires_at_block: int,
        droppable: Collection[str] = (),
    ) -> SubmitOutcome:
        bundle = list(raws)
        hashes = tuple(tx_hash(raw) for raw in bundle)
        errors: list[str] = []
        attempts = 0
        block = max(target_block, await self._head() + 1)
        while block <= expires_at_block:
            if attempts and droppable:
                bundle, hashes = await self._without_mined(bundle, hashes, droppable)
            if self.fence is not None:
                await self.fence()
            attempts += 1
            answers = await self.send_bundle(bundle, block)
            rejected = [a for a in answers if isinstance(a, RpcError | BaseException)]
            errors.extend(f"block {block}: {a}" for a in rejected)
            if len(rejected) == len(answers):
                # no relay took it for this block: it cannot land there
                return SubmitOutcome("bundle", hashes, False, None, attempts, tuple(errors))
            await self._wait_for_block(block)
            included = await self._included_in(watch)
            if included is not None:
                return SubmitOutcome("bundle", hashes, True, included, attempts, tuple(errors))
            block = max(block + 1, await self._head() + 1)
        return SubmitOutcome("bundle", hashes, False, None, attempts, tuple(errors))

    async def _without_mined(
        self, raws: list[str], hashes: tuple[str, ...], droppable: Collection[str]
    ) -> tuple[list[str], tuple[str, ...]]:
        """``raws`` less the droppable ones now mined (a bundle holding a spent nonce cannot
        land), in the same order."""
        wanted = {h.lower() for h in droppable}
        candidates = [h for h in hashes if h in wanted]
        if not candidates:
            return raws, hashes
        receipts = await self.chain.batch([("eth_getTransactionReceipt", [h]) for h in candidates])
        mined = {
            h
            for h, receipt in zip(candidates, receipts, strict=True)
            if isinstance(receipt, dict) and receipt.get("blockNumber")
        }
        kept = [(raw, h) for raw, h in zip(raws, hashes, strict=True) if h not in mined]
        return [raw for raw, _ in kept], tuple(h for _, h in kept)

    async def aclose(self) -> None:
        await self.relays.aclose()


@dataclass
class Signer:
    """Signs behind the kill switch and the lease fence, both checked right before signing."""

    account: LocalAccount
    gate: SigningGate
    lease: ExecutionLease
    signed: int = field(default=0)

    async def sign(self, tx: dict[str, Any]) -> SignedTx:
        await self.lease.check()
        self.gate.check()
        signed = self.account.sign_transaction(tx)
        self.signed += 1
        raw = "0x" + bytes(signed.raw_transaction).hex()
        return SignedTx(raw=raw, hash="0x" + bytes(signed.hash).hex(), nonce=int(tx["nonce"]))


class Submitter:
    """reserve nonce → sign → send → commit/release, for one (chain, account, route)."""

    def __init__(
        self, route: Route, nonces: NonceManager, signer: Signer, lease: ExecutionLease
    ) -> None:
        self.route = route
        self.nonces = nonces
        self.signer = signer
        self.lease = lease

    async def submit(
        self,
        build: Callable[[int], dict[str, Any]],
        *,
        target_block: int,
        expires_at_block: int,
        trigger_raw: str | None = None,
        ahead_raws: Sequence[str] = (),
        on_signed: Callable[[SignedTx], object] | None = None,
    ) -> tuple[SignedTx, SubmitOutcome]:
        """Sign ``build(nonce)`` and send it (on the bundle route after ``ahead_raws`` then
        ``trigger_raw``, in one bundle, if given); ``on_signed`` runs between signing and
        sending (to record the hash write-ahead)."""
        if ahead_raws and trigger_raw is None:
            raise SubmitError("ahead transactions without a trigger: nothing to order them by")
        bundle = self.route.kind == "bundle"
        async with await self.nonces.reserve(exclusive=bundle) as reservation:
            signed = await self.signer.sign(build(reservation.nonce))
            if on_signed is not None:
                on_signed(signed)
            raws = [signed.raw]
            droppable: tuple[str, ...] = ()
            if trigger_raw is not None and bundle:
                raws = [*ahead_raws, trigger_raw, signed.raw]
                droppable = tuple(tx_hash(raw) for raw in ahead_raws)
            await self.lease.check()
            outcome = await self.route.submit(
                raws,
                watch=signed.hash,
                target_block=target_block,
                expires_at_block=expires_at_block,
                droppable=droppable,
            )
            if outcome.consumed:
                reservation.commit()
            else:
                reservation.release()
        return signed, outcome
