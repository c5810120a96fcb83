"""The ASGI application of `balise serve --workers N`: each of the N web processes
(uvicorn's workers, sharing one listening socket) starts its own dispatcher when it
starts (ASGI lifespan) and stops it when it stops, so that the alerts a process accepts
are handed to its own dispatcher at commit (balise.dispatch.wakeup), and every
dispatcher shares the rest of the work through the database (leases, SKIP LOCKED).

BALISE_SERVE_DISPATCHER=0 (set by `--no-dispatcher`) starts none."""

from __future__ import annotations

import asyncio
import logging
import os

from balise.asgi import application as web

log = logging.getLogger(__name__)


class WithDispatcher:
    def __init__(self, app):
        self.app = app
        self.supervisor = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self.start)
                except Exception as exc:  # (a one-line reason, not a traceback, for whoever runs it)
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self) -> None:
        from balise.tracking.places import preload

        preload()
        if os.environ.get("BALISE_SERVE_DISPATCHER", "1") != "0":
            from balise.dispatch.dispatcher import Supervisor

            self.supervisor = Supervisor().start()
            log.info("web process %d started with its own dispatcher", os.getpid())

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop(timeout=30)
            self.supervisor = None


application = WithDispatcher(web)
