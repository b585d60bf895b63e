"""Waiting with a time limit without losing a cancel.

Before Python 3.12, ``asyncio.wait_for`` returns the awaited result when it completes in the
same loop pass as a cancel of the waiting task, and the cancel is gone: a request whose client
had just left ran on to its last token. ``within`` keeps the cancel on every version.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], timeout: float) -> T:
    """``await aw``, raising ``TimeoutError`` after ``timeout`` seconds (``aw`` is then
    cancelled); a cancel of the caller always propagates."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await aw
    return await _within_by_wait(aw, timeout)


async def _within_by_wait(aw: Awaitable[T], timeout: float) -> T:
    """Python 3.10 (no ``asyncio.timeout``): ``asyncio.wait`` never swallows a cancel, though
    a result that came in the same pass is dropped with it."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task})
        raise asyncio.TimeoutError
    return task.result()
