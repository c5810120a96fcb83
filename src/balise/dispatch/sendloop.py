"""Where the dispatcher's sends run: one asyncio event loop on a thread of its own.

A provider with an asynchronous client (the webhook's and Twilio's, on aiohttp) sends on
the loop itself, any number at once on one thread; one with only a blocking client (SMPP,
the console) sends on the loop's worker threads, DISPATCH_WORKERS of them (see
Provider.send_async). Measured on loopback (issue 16): a webhook request cost 0.6 ms of
CPU with httpx on 32 threads, whose connection pool lock they queued on, and 0.1 ms on
the loop with aiohttp.

The loop and its threads start with the first send: a dispatcher that never sends (most
of the tests' ones) starts none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine, Iterable

from balise.providers.base import Provider

log = logging.getLogger(__name__)


class SendLoop:
    def __init__(self, workers: int):
        self.workers = workers
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.pending: set[concurrent.futures.Future] = set()
        self.lock = threading.Lock()

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="balise-send")
        loop.set_default_executor(self.executor)
        self.thread = threading.Thread(target=loop.run_forever, name="balise-send-loop", daemon=True)
        self.thread.start()
        self.loop = loop
        return loop

    def submit(self, send: Coroutine) -> concurrent.futures.Future:
        """Run SEND (a coroutine) on the loop; from any thread."""
        with self.lock:
            loop = self.loop or self._start()
            future = asyncio.run_coroutine_threadsafe(send, loop)
            self.pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future) -> None:
        with self.lock:
            self.pending.discard(future)

    def wait(self) -> None:
        """Until every send submitted so far has finished."""
        with self.lock:
            pending = list(self.pending)
        concurrent.futures.wait(pending)

    def close(self, providers: Iterable[Provider] = ()) -> None:
        """Wait for the sends, close what the providers opened on the loop, stop it."""
        self.wait()
        with self.lock:
            loop, self.loop = self.loop, None
        if loop is None:
            return

        async def close_clients() -> None:
            for provider in providers:
                try:
                    await provider.aclose()
                except Exception:
                    log.exception("provider %s did not close cleanly", provider.name)

        try:
            asyncio.run_coroutine_threadsafe(close_clients(), loop).result(timeout=30)
        except Exception:
            log.exception("the providers' clients could not be closed")
        loop.call_soon_threadsafe(loop.stop)
        self.thread.join(30)
        self.executor.shutdown(wait=True)
        loop.close()
