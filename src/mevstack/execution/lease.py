"""The execution lease: only one engine replica at a time may sign, with a fencing epoch.

Redis layout under ``name``: ``<name>:holder`` = ``<holder id>|<epoch>`` with a TTL of a few
seconds (SET NX PX, extended by the holder through a compare-and-set script), and
``<name>:epoch``, INCR'd atomically with every acquisition and never below ``epoch_floor()``
(the highest epoch already written on a trade), so a Redis that restarts without its data cannot
hand out an epoch that a trade of an earlier holder already carries.  The epoch is returned to
the caller, written on each trade row and re-checked (:meth:`RedisLease.check`) right before
every send: a paused holder whose lease expired fails that check even if it has not noticed yet,
so it can never send after a successor took over.

On acquiring, the new holder first runs ``on_acquire(epoch)`` (resolve the old holder's
in-flight trades) and only then reports itself ready to sign.  With the memory bus there is one
process, and :class:`LocalLease` is the trivial lease of the same shape: held by a primary,
never by a standby (which could otherwise sign beside the primary it cannot see).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mevstack.errors import MevstackError

log = logging.getLogger(__name__)

AcquireCallback = Callable[[int], Awaitable[None]]
EpochFloor = Callable[[], Awaitable[int]]

# SET NX PX, then stamp the value with the freshly INCR'd epoch (raised above the floor the
# caller knows of); all-or-nothing.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local epoch = redis.call('INCR', KEYS[2])
  local floor = tonumber(ARGV[3])
  if epoch <= floor then
    epoch = floor + 1
    redis.call('SET', KEYS[2], epoch)
  end
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch, 'PX', ARGV[2])
  return epoch
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_CHECK = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(MevstackError):
    """This replica does not (or no longer) hold the execution lease: it must not send."""


class ExecutionLease(Protocol):
    epoch: int | None

    async def check(self) -> int: ...


class LocalLease:
    """One process, nothing to contend with: always held at epoch 1, or (``held=False``, a
    standby replica with nobody to hand it the lease) never held, so it never signs."""

    def __init__(self, *, held: bool = True) -> None:
        self.epoch: int | None = 1 if held else None

    async def check(self) -> int:
        if self.epoch is None:
            raise LeaseLost("a standby replica without a shared Redis never holds the lease")
        return self.epoch


class RedisLease:
    """A lease contended for by replicas named ``holder``; run :meth:`run` as a task."""

    def __init__(
        self,
        redis: Redis,
        name: str,
        holder: str,
        *,
        ttl_ms: int = 3000,
        on_acquire: AcquireCallback | None = None,
        epoch_floor: EpochFloor | None = None,
    ) -> None:
        if "|" in holder or not holder:
            raise MevstackError("lease holder id must be non-empty and contain no '|'")
        if ttl_ms < 100:
            raise MevstackError("lease ttl must be at least 100 ms")
        self.redis = redis
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.on_acquire = on_acquire
        self.epoch_floor = epoch_floor
        self._holder_key = f"{name}:holder"
        self._epoch_key = f"{name}:epoch"
        self.epoch: int | None = None
        self._valid_until = 0.0
        self._ready = asyncio.Event()
        self._renewing = True
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._check = redis.register_script(_CHECK)
        self._release = redis.register_script(_RELEASE)

    @property
    def _token(self) -> str:
        return f"{self.holder}|{self.epoch}"

    @property
    def held(self) -> bool:
        """Held, resolved and not locally expired (the cheap test; :meth:`check` is the fence)."""
        return self._ready.is_set() and time.monotonic() < self._valid_until

    async def wait_held(self) -> int:
        await self._ready.wait()
        assert self.epoch is not None
        return self.epoch

    async def try_acquire(self) -> int | None:
        """One attempt; the new epoch if this replica took the lease (callback not run)."""
        floor = 0 if self.epoch_floor is None else await self.epoch_floor()
        started = time.monotonic()
        result: Any = await self._acquire(
            keys=[self._holder_key, self._epoch_key], args=[self.holder, self.ttl_ms, floor]
        )
        epoch = int(result)
        if epoch == 0:
            return None
        self.epoch = epoch
        self._valid_until = started + self.ttl_ms / 1000.0
        return epoch

    async def renew(self) -> bool:
        if self.epoch is None:
            return False
        started = time.monotonic()
        result: Any = await self._renew(keys=[self._holder_key], args=[self._token, self.ttl_ms])
        if int(result) == 1:
            self._valid_until = started + self.ttl_ms / 1000.0
            return True
        self._lost("renewal refused: another replica holds the lease")
        self.epoch = None
        return False

    async def check(self) -> int:
        """The epoch if this replica holds the lease now (a Redis round trip); else LeaseLost."""
        if self.epoch is None or not self._ready.is_set():
            raise LeaseLost(f"replica {self.holder} does not hold the execution lease")
        try:
            result: Any = await self._check(
                keys=[self._holder_key, self._epoch_key], args=[self._token, self.epoch]
            )
        except RedisError as exc:
            raise LeaseLost(f"execution lease cannot be confirmed: {exc}") from None
        if int(result) != 1:
            self._lost("fencing check failed: the lease moved to another replica")
            raise LeaseLost(
                f"replica {self.holder} lost the execution lease (epoch {self.epoch} is stale)"
            )
        return self.epoch

    def _lost(self, why: str) -> None:
        if self._ready.is_set():
            log.warning("execution lease lost by %s: %s", self.holder, why)
        self._ready.clear()
        self._valid_until = 0.0

    def pause_renewal(self) -> None:
        """Stop renewing while keeping the task alive (tests: a stalled holder)."""
        self._renewing = False

    async def run(self) -> None:
        """Contend for the lease forever: acquire, resolve, renew every third of the TTL."""
        interval = self.ttl_ms / 3000.0
        while True:
            try:
                if self.epoch is None:
                    if await self.try_acquire() is not None:
                        await self._resolve_then_ready()
                elif self._renewing:
                    await self.renew()
            except RedisError as exc:
                log.warning("execution lease: redis error: %s", exc)
                if time.monotonic() >= self._valid_until:
                    self._lost(f"redis unreachable: {exc}")
                    self.epoch = None
            except Exception:
                # e.g. the store cannot give the epoch floor: keep contending, never die quietly
                log.exception("execution lease: contending failed; retrying")
                if time.monotonic() >= self._valid_until:
                    self._lost("contending failed")
                    self.epoch = None
            await asyncio.sleep(interval)  # the renewal cadence itself, not a synchronisation

    async def _resolve_then_ready(self) -> None:
        if self.on_acquire is not None and self.epoch is not None:
            # keep renewing while the old holder's trades are being resolved
            renewer = asyncio.create_task(self._renew_while_resolving())
            try:
                await self.on_acquire(self.epoch)
            except Exception:
                log.exception("execution lease: resolving in-flight trades failed; releasing")
                await self.release()
                return
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
        if self.epoch is not None and time.monotonic() < self._valid_until:
            self._ready.set()
            log.info("execution lease acquired by %s (epoch %d)", self.holder, self.epoch)

    async def _renew_while_resolving(self) -> None:
        while self.epoch is not None:
            await asyncio.sleep(self.ttl_ms / 3000.0)  # renewal cadence
            await self.renew()

    async def release(self) -> None:
        """Give the lease up now (clean shutdown) so a standby need not wait for the TTL."""
        if self.epoch is not None:
            await self._release(keys=[self._holder_key], args=[self._token])
        self._lost("released")
        self.epoch = None
