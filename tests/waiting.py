"""Waiting for a condition instead of sleeping a fixed time: a fixed sleep is either too short
on a loaded machine (the test flakes) or longer than needed everywhere else (the suite
crawls). ``until`` returns as soon as the condition holds and fails with what it waited for."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Poll ``predicate`` (plain or async) until it returns something truthy, and return that.

    Raises AssertionError naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
