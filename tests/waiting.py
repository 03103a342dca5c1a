"""Condition polling for tests: wait for a state with a deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(predicate: Callable[[], bool], within: float = 5.0, what: str = "") -> None:
    try:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 - the condition is not an Event
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what or predicate}") from None
