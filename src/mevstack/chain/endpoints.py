"""One chain's endpoint pool: probing, failover for reads, fan-out for raw transactions.

Owns the I/O around :mod:`mevstack.chain.health` (which owns the rules): it probes every
endpoint (chain id, syncing, latest head, peers) at least once per block time, records the outcome
and latency of every call, and routes each read to the best endpoint, failing over on transport
errors, timeouts and rate limits.  An endpoint that serves another chain id is ``wrong_chain`` and
never receives a call except its probe.  Answers about the request itself (a revert, an unknown
block) are returned to the caller at once: another node would say the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak

from mevstack.chain.errors import (
    RpcError,
    RpcRateLimited,
    RpcResponseError,
    RpcTransportError,
)
from mevstack.chain.health import (
    EndpointHealth,
    Head,
    HealthPolicy,
    PrimaryElection,
    consensus_tip,
    read_order,
)
from mevstack.chain.rpc import RpcClient, is_already_known

log = logging.getLogger(__name__)

_FAILOVER_ERRORS = (RpcTransportError, RpcRateLimited)


@dataclass
class Endpoint:
    url: str
    safe_url: str
    client: RpcClient
    health: EndpointHealth


ProbeListener = Callable[["EndpointPool"], Awaitable[None]]


class EndpointPool:
    """Every configured RPC endpoint of one chain behind ``request`` / ``batch``."""

    def __init__(
        self,
        chain: str,
        chain_id: int,
        urls: Sequence[str],
        *,
        block_time: float = 12.0,
        attempt_timeout: float | None = None,
        probe_interval: float | None = None,
        policy: HealthPolicy | None = None,
    ) -> None:
        if not urls:
            raise RpcTransportError(f"chain {chain}: no rpc endpoint configured")
        self.chain = chain
        self.chain_id = chain_id
        self.block_time = block_time
        self.policy = policy or HealthPolicy(block_time=block_time)
        # A hanging node must be given up on well within the failover budget of
        # max(block time, 2 s), leaving time for the next endpoint to answer.
        self.attempt_timeout = attempt_timeout or max(block_time, 2.0) / 2
        self.probe_interval = probe_interval or min(max(block_time, 0.2), 2.0)
        # Rounds start on a fixed cadence and a probe may not outlast most of one, so a hanging
        # endpoint cannot stretch the status refresh beyond the interval.
        self.probe_timeout = min(self.attempt_timeout, 0.8 * self.probe_interval)
        self.endpoints = [
            Endpoint(
                url=url,
                safe_url=(
                    client := RpcClient(url, timeout=self.attempt_timeout, chain=chain)
                ).safe_url,
                client=client,
                health=EndpointHealth(chain_id, self.policy),
            )
            for url in urls
        ]
        self.election = PrimaryElection(self.policy)
        self.tip: Head | None = None
        self.listeners: list[ProbeListener] = []
        self._probe_task: asyncio.Task[None] | None = None

    # -- probing -------------------------------------------------------------------------------

    async def start(self) -> EndpointPool:
        await self.probe_all()
        if self._probe_task is None:
            self._probe_task = asyncio.create_task(self._probe_loop(), name=f"probe-{self.chain}")
        return self

    async def _probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_round = loop.time() + self.probe_interval
        while True:
            await asyncio.sleep(max(0.0, next_round - loop.time()))  # the probe cadence
            next_round = loop.time() + self.probe_interval
            try:
                await self.probe_all()
            except Exception:  # a probe round must never kill the loop
                log.exception("chain %s: probe round failed", self.chain)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self._probe(e) for e in self.endpoints))
        heads = [
            e.health.head
            for e in self.endpoints
            if e.health.head is not None and not e.health.wrong_chain and not e.health.excluded
        ]
        self.tip = consensus_tip(heads, self.policy.agree_blocks)
        for e in self.endpoints:
            e.health.update_lag(self.tip)
        self.election.evaluate([e.health for e in self.endpoints])
        for listener in list(self.listeners):
            await listener(self)

    async def _probe(self, endpoint: Endpoint) -> None:
        started = time.monotonic()
        try:
            chain_id, syncing, block, peers = await endpoint.client.batch(
                [
                    ("eth_chainId", []),
                    ("eth_syncing", []),
                    ("eth_getBlockByNumber", ["latest", False]),
                    ("net_peerCount", []),
                ],
                time_limit=self.probe_timeout,
            )
            if isinstance(chain_id, RpcError) or isinstance(block, RpcError) or block is None:
                raise RpcTransportError(f"{endpoint.safe_url}: probe got no chain id or head")
            head = Head(int(block["number"], 16), int(block["timestamp"], 16))
            endpoint.health.record_probe(
                chain_id=int(chain_id, 16),
                head=head,
                syncing=not isinstance(syncing, RpcError) and bool(syncing),
                peers=int(peers, 16) if isinstance(peers, str) else None,
                latency_ms=(time.monotonic() - started) * 1000.0,
            )
        except (RpcError, KeyError, TypeError, ValueError) as exc:
            endpoint.health.record_probe_failure(
                _describe(exc), (time.monotonic() - started) * 1000.0
            )

    # -- reads ---------------------------------------------------------------------------------

    @property
    def primary(self) -> Endpoint | None:
        index = self.election.primary
        return None if index is None else self.endpoints[index]

    def _candidates(self) -> list[Endpoint]:
        order = read_order([e.health for e in self.endpoints], self.election.primary)
        return [self.endpoints[i] for i in order]

    async def request(self, method: str, params: list[Any]) -> Any:
        """The result from the best endpoint, failing over on endpoint failures."""
        return await self._with_failover(
            method, lambda e: e.client.request(method, params, time_limit=self.attempt_timeout)
        )

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any | RpcError]:
        results: list[Any | RpcError] = await self._with_failover(
            f"batch of {len(calls)}",
            lambda e: e.client.batch(calls, time_limit=self.attempt_timeout),
        )
        return results

    async def _with_failover(self, what: str, call: Callable[[Endpoint], Awaitable[Any]]) -> Any:
        failures: list[str] = []
        for endpoint in self._candidates():
            started = time.monotonic()
            try:
                result = await call(endpoint)
            except _FAILOVER_ERRORS as exc:
                elapsed = (time.monotonic() - started) * 1000.0
                endpoint.health.record_call(False, elapsed, _describe(exc))
                if isinstance(exc, RpcTransportError):
                    endpoint.health.exclude(_describe(exc))
                    self.election.evaluate([e.health for e in self.endpoints])
                failures.append(_describe(exc))
                continue
            except RpcError:
                endpoint.health.record_call(True, (time.monotonic() - started) * 1000.0)
                raise
            endpoint.health.record_call(True, (time.monotonic() - started) * 1000.0)
            return result
        if not failures:
            known = "; ".join(e.health.last_error or e.safe_url for e in self.endpoints)
            raise RpcTransportError(
                f"chain {self.chain}: {what}: no endpoint with a verified chain id ({known})"
            )
        raise RpcTransportError(
            f"chain {self.chain}: {what}: all endpoints failed ({'; '.join(failures)})"
        )

    # -- writes --------------------------------------------------------------------------------

    async def send_raw_transaction(self, raw_tx: str) -> str:
        """Send to every healthy endpoint at once; the tx hash if any accepted it.

        "already known" for this very transaction counts as accepted (another endpoint, or a
        node's own peer, delivered it first).  Without any healthy endpoint every non-wrong-chain
        endpoint is tried.
        """
        raw = bytes.fromhex(raw_tx.removeprefix("0x"))
        tx_hash = "0x" + keccak(raw).hex()
        usable = self._candidates()
        targets = [e for e in usable if e.health.state == "ok"] or usable
        if not targets:
            raise RpcTransportError(f"chain {self.chain}: no usable endpoint to send to")
        outcomes = await asyncio.gather(
            *(
                e.client.request(
                    "eth_sendRawTransaction", [raw_tx], time_limit=self.attempt_timeout
                )
                for e in targets
            ),
            return_exceptions=True,
        )
        rejection: RpcError | None = None
        transport: RpcError | None = None
        accepted = False
        for endpoint, outcome in zip(targets, outcomes, strict=True):
            if (isinstance(outcome, str) and outcome.lower() == tx_hash) or (
                isinstance(outcome, RpcResponseError) and is_already_known(outcome.message)
            ):
                accepted = True
            elif isinstance(outcome, _FAILOVER_ERRORS):
                endpoint.health.record_call(False, 0.0, _describe(outcome))
                transport = outcome
            elif isinstance(outcome, RpcError):
                rejection = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                rejection = RpcResponseError(-1, f"node returned hash {outcome!r}, not {tx_hash}")
        if accepted:
            return tx_hash
        raise rejection or transport or RpcTransportError(f"chain {self.chain}: send failed")

    async def aclose(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        for endpoint in self.endpoints:
            await endpoint.client.aclose()


def _describe(exc: BaseException) -> str:
    # RpcError messages are built from redacted URLs; anything else is reduced to its type.
    return str(exc) if isinstance(exc, RpcError) else type(exc).__name__
