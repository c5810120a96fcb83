"""Immediate wake-up of dispatchers: an in-process event set on commit, and on
PostgreSQL a LISTEN connection that sets the same event when another process NOTIFYs.

``local_event`` wakes the dispatch loop for any reason (a send finished, too);
``new_work`` says that rows were written, so the loop queries the database for them
instead of on every finished send.

``local_dispatcher`` is the dispatcher running in this process, if any (``balise
serve``): rows written here are leased to it in their own transaction and handed to it
once committed, so an alert's first messages leave without waiting for a claim. Should
the process die first, the leases expire and any dispatcher claims the rows."""

from __future__ import annotations

import logging
import threading

from django.db import connection

log = logging.getLogger(__name__)

CHANNEL = "balise_dispatch"
local_event = threading.Event()
new_work = threading.Event()
local_dispatcher = None  # a balise.dispatch.dispatcher.Dispatcher while its loop runs


def signal_new_work() -> None:
    new_work.set()
    local_event.set()


def take_new_work() -> bool:
    """Whether work was signalled since the last call (and forget it)."""
    if new_work.is_set():
        new_work.clear()
        return True
    return False


class PostgresListener(threading.Thread):
    """Sets EVENT whenever a NOTIFY arrives on the dispatch channel; reconnects on error."""

    def __init__(self, stop: threading.Event):
        super().__init__(name="balise-listen", daemon=True)
        self.stop = stop
        self.ready = threading.Event()

    def run(self) -> None:
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        while not self.stop.is_set():
            try:
                with psycopg.connect(autocommit=True, **params) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.ready.set()
                    signal_new_work()  # anything written while we were not listening
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            signal_new_work()
            except Exception as exc:  # a lost connection must never stop the dispatcher
                log.warning("dispatch listener reconnecting after %s", type(exc).__name__)
                self.stop.wait(1.0)
