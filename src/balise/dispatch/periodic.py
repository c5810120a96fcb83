"""Periodic jobs of the apps above dispatch (the supervision checks...), run by every
dispatcher. An app registers, in its AppConfig.ready(), a function taking the current
time and a function giving its interval in seconds (0 or less: off). The dispatcher runs
the jobs that are due one after the other on a thread of their own (its own database
connection), never on the dispatch loop, and imports nothing from those apps.

A job's first run waits one interval after the dispatcher starts (a dispatcher that
just started has not yet heard what arrived while it was down)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError, connection
from django.utils import timezone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[datetime], object]
    interval: Callable[[], float]


_jobs: dict[str, Job] = {}


def register(name: str, run: Callable[[datetime], object], interval: Callable[[], float]) -> None:
    _jobs[name] = Job(name, run, interval)


class Runner:
    """The periodic jobs of one dispatcher."""

    def __init__(self):
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="balise-periodic")
        self.future = None
        self.started = time.monotonic()
        self.last: dict[str, float] = {}

    def tick(self) -> None:
        if self.future is not None and not self.future.done():
            return
        now = time.monotonic()
        due = []
        for job in list(_jobs.values()):
            interval = job.interval()
            if interval > 0 and now - self.last.get(job.name, self.started) >= interval:
                self.last[job.name] = now
                due.append(job)
        if due:
            self.future = self.executor.submit(self._run, due)

    @staticmethod
    def _run(due: list[Job]) -> None:
        try:
            for job in due:
                try:
                    job.run(timezone.now())
                except DatabaseError as exc:
                    log.warning("%s: database error (%s)", job.name, type(exc).__name__)
                    connection.close()
                except Exception:  # another app's job must never stop alert dispatch
                    log.exception("periodic job %s failed", job.name)
        finally:
            connection.close()  # (this thread's: it keeps no connection between runs)

    def close(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait)
