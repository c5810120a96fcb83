"""Waiting for an event with a deadline, without ever losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` returns the inner result when the waiting task
is cancelled in the same loop turn as the event is set: the cancellation is lost,
the loop goes round again, and a station shutting down hangs for ever.
``asyncio.timeout`` has no such race, so every timed wait in the station goes here.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """True when ``event`` is set, False when ``timeout`` seconds passed first."""
    if timeout is None:
        await event.wait()
        return True
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
    except TimeoutError:
        return False
    return True
