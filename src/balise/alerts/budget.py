"""Alert budgets: how many alerts a device, and an association, may fan out to contacts.

A looping device or a leaked token must not make Balise send unlimited SMS and calls.
Each device and each association has a token bucket: an alert takes one token from the
device's bucket, then one from the association's; buckets refill continuously up to
their burst. An alert that finds a bucket empty is still stored and still reaches the
association's on-call line, but not the contacts (balise.alerts.actions), and the
association is told once per episode (from the first empty bucket until it is full
again).

The defaults (settings ALERT_BUDGET_DEVICE = 40 at once then 20 an hour,
ALERT_BUDGET_ASSOCIATION = 1000 then 500 an hour) are far above what a real person in
danger makes: presses during an open alert join it and take no token, so only alerts
raised after the previous one was closed count, and closing one takes her PIN or a
member of staff. A long night of violence is 20 to 30 such alerts, spread over hours;
to reach the device budget she would need 40 in a row, and 20 more every hour after
that. An association of several thousand people sees a few alerts a day, tens on its
worst evening; its budget only stops a flood from many devices (tokens leaked in bulk).

Buckets are rows (AlertBudget), so they hold across processes, machines and restarts.
Taking a token is one statement, an upsert whose conditional UPDATE computes the refill
in SQL, atomic on SQLite and PostgreSQL alike: under READ COMMITTED, concurrent updates
of one row wait for each other and re-check the condition on the row as committed. It runs in a short
transaction of its own, just before the alert's: the association's row is locked for
the two upserts only. (Inside the alert's transaction it stayed locked until that
commit, and on PostgreSQL every alert of the association queued behind the slowest one.)
An alert whose insert is refused gives its token back (give_back): a concurrent retry of
the same press, or a simultaneous first press of hers whose alert it then joins, was first.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import F, FloatField, Value
from django.db.models.functions import Least

from balise.alerts.models import AlertBudget
from balise.db import rows

# Unix time in seconds; tests replace it (an injected clock, no sleeps).
clock = time.time


@dataclass(frozen=True)
class Verdict:
    within: bool
    # Which bucket was empty ("device", "association"), and whether this alert is the
    # first of the episode (the association is told then, and only then).
    bucket: str = ""
    episode_start: bool = False


@functools.cache
def _take_sql(vendor: str) -> str:
    """Take one token from a bucket in one statement, creating it full on its first alert:
    an upsert whose update refills in SQL and only happens when a token is left (RETURNING
    says whether it did). Compiled once: the same UPDATE built with ORM expressions cost
    more CPU than the rest of the alert's transaction (measured: bench/press_cpu.py)."""
    q = connection.ops.quote_name
    table = q(AlertBudget._meta.db_table)

    def column(name: str) -> str:
        return f"{table}.{q(AlertBudget._meta.get_field(name).column)}"

    greatest, least = ("MAX", "MIN") if vendor == "sqlite" else ("GREATEST", "LEAST")
    # The bucket refilled up to now (a clock gone back refills nothing). Parameters:
    # burst, now, refill per second.
    level = f"{least}(%s, {column('tokens')} + {greatest}(0, %s - {column('refilled_at')}) * %s)"
    key, tokens, refilled_at, over_since = (q(AlertBudget._meta.get_field(n).column)
                                            for n in ("key", "tokens", "refilled_at", "over_since"))
    return (f"INSERT INTO {table} ({key}, {tokens}, {refilled_at}, {over_since}) VALUES (%s, %s, %s, NULL)"
            f" ON CONFLICT ({key}) DO UPDATE SET {tokens} = {level} - 1,"
            f" {refilled_at} = {greatest}({column('refilled_at')}, %s),"
            # A bucket found full again ends its over-budget episode.
            f" {over_since} = CASE WHEN {level} >= %s THEN NULL ELSE {column('over_since')} END"
            f" WHERE {level} >= 1 RETURNING 1")


def _take_from(key: str, budget: tuple[float, float], now: float) -> bool:
    burst, per_hour = budget
    level = [burst, now, per_hour / 3600]
    # (prepared on PostgreSQL: balise.db.rows)
    return bool(rows(_take_sql(connection.vendor), [key, burst - 1, now, *level, now, *level, burst - 1e-6, *level]))


def _start_episode(key: str, now: float) -> bool:
    """True for the one alert (across processes) that finds the bucket empty first."""
    return bool(AlertBudget.objects.filter(key=key, over_since__isnull=True).update(over_since=now))


def _buckets(device) -> list[tuple[str, str, tuple[float, float]]]:
    """(bucket, key, budget) of DEVICE, in the order tokens are taken."""
    return [
        ("device", f"device:{device.pk}", settings.ALERT_BUDGET_DEVICE),
        ("association", f"association:{device.association_id}", settings.ALERT_BUDGET_ASSOCIATION),
    ]


def take(device) -> Verdict:
    """Take a token for an alert of DEVICE from its bucket, then its association's.
    Runs in a transaction of its own, before the alert's."""
    now = clock()
    for bucket, key, budget in _buckets(device):
        if not _take_from(key, budget, now):
            return Verdict(False, bucket, _start_episode(key, now))
    return Verdict(True)


def give_back(device, verdict: Verdict) -> None:
    """Return the tokens VERDICT took: for a press whose alert a concurrent retry of the same
    press had already raised (the retries of one press cost one token, as before), or that
    joins the alert a simultaneous press of hers raised first (a join costs none)."""
    for bucket, key, (burst, _per_hour) in _buckets(device):
        if bucket == verdict.bucket:
            break  # this bucket was empty, and the ones after it were not reached
        AlertBudget.objects.filter(key=key).update(
            tokens=Least(Value(float(burst), output_field=FloatField()), F("tokens") + 1.0, output_field=FloatField()))
