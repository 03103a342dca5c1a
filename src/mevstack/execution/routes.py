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

A send can fail in two ways.  A node that answers with an error rejected it: "nonce too low" and
"replacement transaction underpriced" mean another transaction holds the nonce
(:class:`NonceConflict`: the nonce is spent, the manager resynchronises from the chain); other
rejections release it.  A transport failure (timeout, dropped connection) leaves the outcome
unknown (:class:`SendUncertain`): the node may hold the transaction.  Before the nonce is given
back, :meth:`Submitter.submit` resolves it: the transaction known by hash → it was received;
the account's pending nonce past ours → another transaction took it; neither → the very same
signed bytes are sent once more (a node that had them says "already known"), and only a clear
rejection of that releases the nonce.  Still unknown → the nonce is kept and the trade counts as
submitted: the follow loop settles or replaces it (:mod:`mevstack.engine.execution_runtime`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
import orjson
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from mevstack import jsonsafe
from mevstack.chain.errors import RpcError, RpcRateLimited, RpcResponseError, RpcTransportError
from mevstack.chain.rpc import JsonRpc, error_from_object
from mevstack.errors import MevstackError
from mevstack.execution.lease import ExecutionLease
from mevstack.execution.nonces import NonceError, NonceManager, Reservation
from mevstack.execution.relay_signing import HEADER, sign_body
from mevstack.execution.trading_state import SigningGate
from mevstack.obs.metrics import SEND_UNKNOWN_OUTCOME

log = logging.getLogger(__name__)

RouteKind = Literal["public", "private", "bundle"]
_ALREADY_KNOWN = ("alreadyknown", "knowntransaction", "alreadyimported")
# node messages meaning another transaction holds the nonce (geth, anvil, erigon, nethermind)
_NONCE_CONFLICTS = (
    ("noncetoolow", "nonce_too_low"),
    ("oldnonce", "nonce_too_low"),
    # only a *replacement* that is underpriced means the nonce is held: geth's plain
    # "transaction underpriced" is a fee below the pool's floor, and the nonce is still free
    ("replacementtransactionunderpriced", "underpriced"),
    ("replacementunderpriced", "underpriced"),
)
_ids = itertools.count(1)


class SubmitError(MevstackError):
    """No endpoint or relay accepted the submission."""


class NonceConflict(SubmitError):
    """The node refused the nonce: another transaction holds it (``reason`` says how)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SendUncertain(SubmitError):
    """No endpoint confirmed the send and at least one may have received it (a transport
    failure: timeout, dropped connection)."""


def nonce_conflict(exc: BaseException) -> str | None:
    """``nonce_too_low`` / ``underpriced`` when a node's rejection means the nonce is taken."""
    if not isinstance(exc, RpcResponseError):
        return None
    lowered = exc.message.lower().replace(" ", "").replace("_", "")
    return next((reason for word, reason in _NONCE_CONFLICTS if word in lowered), None)


def _raise_unaccepted(route: str, expected: str, outcomes: Sequence[object]) -> None:
    """Why no endpoint (relay) accepted ``expected``: a nonce conflict, an unknown outcome
    (some transport failure) or a plain rejection, in that order of precedence."""
    errors = "; ".join(str(o) for o in outcomes)
    message = f"{route}: no endpoint accepted {expected}: {errors}"
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and (reason := nonce_conflict(outcome)):
            raise NonceConflict(message, reason)
    if any(isinstance(o, RpcTransportError | RpcRateLimited) for o in outcomes):
        raise SendUncertain(message)
    raise SubmitError(message)


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
    already_known: bool = False  # a node already had it: an earlier send reached it
    resolution: str | None = None  # how an unknown outcome was resolved, if there was one


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

    async def send_raw(self, raw: str) -> tuple[str, bool]:
        """The hash once an endpoint accepted ``raw``, and whether only "already known" said so."""
        expected = tx_hash(raw)
        outcomes = await asyncio.gather(
            *(e.request("eth_sendRawTransaction", [raw]) for e in self.endpoints),
            return_exceptions=True,
        )
        if any(_accepted(o, expected) for o in outcomes):
            return expected, not any(isinstance(o, str) for o in outcomes)
        _raise_unaccepted("public route", expected, outcomes)
        raise AssertionError("unreachable")

    async def submit(
        self,
        raws: Sequence[str],
        *,
        watch: str,
        target_block: int,
        expires_at_block: int,
        droppable: Collection[str] = (),
    ) -> SubmitOutcome:
        sent = [await self.send_raw(raw) for raw in raws]
        return SubmitOutcome(
            "public",
            tuple(h for h, _ in sent),
            consumed=True,
            already_known=any(known for _, known in sent),
        )


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
            answer = jsonsafe.loads(response.content)  # a relay is outside data
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
                _raise_unaccepted("private route", expected, outcomes)
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
    """reserve nonce → sign → send → commit/release, for one (chain, account, route); an
    unknown outcome is resolved before the nonce is given back (see the module docstring)."""

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

            async def send() -> SubmitOutcome:
                return await self.route.submit(
                    raws,
                    watch=signed.hash,
                    target_block=target_block,
                    expires_at_block=expires_at_block,
                    droppable=droppable,
                )

            try:
                outcome = await send()
            except NonceConflict as exc:
                reservation.commit()  # another transaction holds it: never hand it out again
                await self.resync(exc.reason)
                raise
            except (SendUncertain, RpcTransportError) as exc:
                outcome = await self._resolve(reservation, signed, send, exc)
                return signed, outcome
            if outcome.consumed:
                reservation.commit()
            else:
                reservation.release()
        if outcome.already_known:
            await self.resync("already_known")
        return signed, outcome

    async def resync(self, reason: str) -> None:
        """Resynchronise the nonce manager; a node that cannot say leaves it as it is (the next
        send's answer tries again)."""
        try:
            await self.nonces.resync(reason)
        except MevstackError as exc:
            log.warning("chain %s: nonce resync (%s) failed: %s", self.nonces.chain, reason, exc)

    async def known(self, tx: str) -> bool:
        """Whether any endpoint knows ``tx`` (pending or mined); raises if none can say."""
        answers = await asyncio.gather(
            *(e.request("eth_getTransactionByHash", [tx]) for e in self.nonces.endpoints),
            return_exceptions=True,
        )
        if any(isinstance(a, dict) for a in answers):
            return True
        if all(isinstance(a, BaseException) for a in answers):
            raise RpcTransportError(f"chain {self.nonces.chain}: no endpoint can look up {tx}")
        return False

    async def _resolve(
        self,
        reservation: Reservation,
        signed: SignedTx,
        send: Callable[[], Awaitable[SubmitOutcome]],
        error: MevstackError,
    ) -> SubmitOutcome:
        """Settle ``reservation`` after a send whose outcome is unknown (module docstring)."""
        kind = self.route.kind
        first = str(error)[:300]
        try:
            if await self.known(signed.hash):
                reservation.commit()
                return self._resolved("received", signed, SubmitOutcome(kind, (signed.hash,), True))
            if await self.nonces.pending_count() > signed.nonce:
                reservation.commit()
                self._resolved("nonce_consumed", signed, None)
                await self.resync("unknown_outcome")
                raise SubmitError(
                    f"send of {signed.hash} had no answer ({first}) and nonce {signed.nonce} "
                    "was taken by another transaction"
                ) from None
            if kind == "bundle":
                # a bundle targets given blocks: the chain not holding it is the answer
                reservation.release()
                self._resolved("not_received", signed, None)
                raise SubmitError(f"bundle send had no answer ({first}); not landed") from None
            try:
                outcome = await send()
            except NonceConflict:
                reservation.commit()
                self._resolved("nonce_consumed", signed, None)
                await self.resync("unknown_outcome")
                raise
            except (SendUncertain, RpcTransportError):
                raise  # still unknown: kept below
            except SubmitError as exc:
                reservation.release()  # a clear rejection of these very bytes: never sent
                self._resolved("not_received", signed, None)
                raise SubmitError(f"send had no answer ({first}), resend refused: {exc}") from None
            reservation.commit()
            return self._resolved(
                "received" if outcome.already_known else "resent", signed, outcome
            )
        except (SendUncertain, RpcTransportError, NonceError) as exc:
            # the node may hold it and nobody can say: keep the nonce, follow the trade
            reservation.commit()
            return self._resolved(
                "unresolved",
                signed,
                SubmitOutcome(kind, (signed.hash,), True, errors=(first, str(exc)[:300])),
            )

    def _resolved(
        self, resolution: str, signed: SignedTx, outcome: SubmitOutcome | None
    ) -> SubmitOutcome:
        chain = self.nonces.chain
        SEND_UNKNOWN_OUTCOME.labels(chain=chain, resolution=resolution).inc()
        log.info(
            "chain %s: send of %s (nonce %d) had an unknown outcome: %s",
            chain,
            signed.hash,
            signed.nonce,
            resolution,
        )
        if outcome is None:
            return SubmitOutcome(self.route.kind, (signed.hash,), False, resolution=resolution)
        return dataclasses.replace(outcome, resolution=resolution)
