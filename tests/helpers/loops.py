"""Running a coroutine to completion from a synchronous test."""

from __future__ import annotations

import asyncio
import concurrent.futures


def run_async(coroutine):
    """asyncio.run() on a thread of its own.

    Playwright's sync API (browser tests) keeps an event loop running on the main
    thread for the whole session, where asyncio.run() refuses to start another.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        return executor.submit(asyncio.run, coroutine).result()
