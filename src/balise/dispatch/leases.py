"""Outbox rows (balise.dispatch.models.Delivery: every message Balise sends) claimed with a lease.

A row is due when it is pending and its next attempt has come, or when it is being sent
by someone who is gone: whose lease has run out, or whose heartbeat (DispatcherBeat) is
older than DISPATCH_TAKEOVER_SECONDS (a crashed dispatcher: its work is taken over in
seconds rather than when its lease expires). Claiming marks it as being sent by the
claimer until the lease expires, in one UPDATE: the old owner's outcome, should it come
late, is then ignored, as the outcome is recorded only by the claimer still holding it.

A dispatcher beats before it takes any lease (see Dispatcher.run), so a row leased to an
owner that has no heartbeat row at all is left until its lease expires.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Case, CharField, F, Q, Value, When

from balise.db import column, for_update, rows

log = logging.getLogger(__name__)

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"


def dead_owners(now: datetime, me: str | None = None) -> list[str]:
    """Dispatchers whose last beat is older than DISPATCH_TAKEOVER_SECONDS (ME excepted),
    among those that beat recently enough to still hold unexpired leases."""
    from balise.dispatch.models import DispatcherBeat

    stale = now - timedelta(seconds=settings.DISPATCH_TAKEOVER_SECONDS)
    horizon = stale - timedelta(seconds=settings.DISPATCH_LEASE_SECONDS + settings.DISPATCH_BEAT_SECONDS + 60)
    beats = DispatcherBeat.objects.filter(beat_at__lt=stale, beat_at__gte=horizon)
    if me:
        beats = beats.exclude(name=me)
    return list(beats.values_list("name", flat=True))


def held_by_the_gone(now: datetime, dead: list[str], state: str = SENDING) -> Q:
    """Rows in STATE whose lease has run out or whose owner is dead."""
    gone = Q(state=state, lease_until__lt=now)
    if dead:
        gone |= Q(state=state, lease_owner__in=dead)
    return gone


def due(model, now: datetime, dead: list[str] | None = None, me: str | None = None):
    if dead is None:
        dead = dead_owners(now, me)
    return model.objects.filter(Q(state=PENDING, next_attempt_at__lte=now) | held_by_the_gone(now, dead)).order_by(
        "next_attempt_at")


def claim(model, owner: str, limit: int, now: datetime, dead: list[str] | None = None) -> list:
    """Lease up to LIMIT due rows to OWNER and return their ids; call it inside a
    transaction. Other dispatchers skip rows locked here (PostgreSQL); on SQLite the
    transaction itself serialises claims."""
    rows = due(model, now, dead, owner)
    if connection.features.has_select_for_update_skip_locked:
        rows = for_update(rows, skip_locked=True)
    found = list(rows.values_list("id", "state", "lease_owner", "lease_until")[:limit])
    ids = [row_id for row_id, _, _, _ in found]
    if ids:
        model.objects.filter(id__in=ids).update(
            state=SENDING, lease_owner=owner, attempts=F("attempts") + 1,
            lease_until=now + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS),
        )
        taken = [(prev, until) for _, state, prev, until in found if state == SENDING and until and until >= now]
        if taken:
            log.warning("%s took over %d %s rows leased to %s (no heartbeat)", owner, len(taken),
                        model.__name__, ", ".join(sorted({prev for prev, _ in taken})))
    return ids


def outcome_fields(outcome, attempts: int, now: datetime) -> tuple[str, dict]:
    """What a send's outcome writes on its row: ("sent" | "failed" | "retry", fields)."""
    from balise.dispatch.dispatcher import backoff_seconds

    cleared = {"lease_owner": "", "lease_until": None, "provider": outcome.provider}
    if outcome.ok:
        return "sent", {"state": SENT, "provider_ref": outcome.provider_ref, "sent_at": now, "last_error": "", **cleared}
    if outcome.permanent or attempts >= settings.DISPATCH_MAX_ATTEMPTS:
        return "failed", {"state": FAILED, "last_error": outcome.error[:300], **cleared}
    retry_at = now + timedelta(seconds=backoff_seconds(attempts, outcome.retry_after))
    return "retry", {"state": PENDING, "next_attempt_at": retry_at, "last_error": outcome.error[:300], **cleared}


def record_outcomes(model, owner: str, outcomes: list, now: datetime) -> dict:
    """Writes each outcome (row id, attempts, outcome) on its row if OWNER still holds
    it; call it inside a transaction. Returns {row id: "sent" | "failed" | "retry"} for
    the rows written. Sends that went out, nearly all of them, take one statement per
    provider: on PostgreSQL one prepared UPDATE that checks the lease itself."""
    results = [(row_id, *outcome_fields(outcome, attempts, now), outcome) for row_id, attempts, outcome in outcomes]
    checked_by_update = connection.vendor == "postgresql"
    to_check = [row_id for row_id, result, _, _ in results if not (checked_by_update and result == "sent")]
    still_held = set()
    if to_check:
        rows = model.objects.filter(id__in=to_check, lease_owner=owner, state=SENDING)
        if connection.features.has_select_for_update:
            rows = for_update(rows)
        still_held = set(rows.values_list("id", flat=True))
    written: dict = {}
    sent: dict[str, tuple[dict, list]] = {}  # provider -> (fields, [(row id, provider ref)])
    for row_id, result, fields, outcome in results:
        if result == "sent":  # the same fields for a provider's sends, but their references
            sent.setdefault(outcome.provider, (fields, []))[1].append((row_id, outcome.provider_ref))
        elif row_id in still_held:
            model.objects.filter(id=row_id).update(**fields)
            written[row_id] = result
    for fields, group in sent.values():
        if checked_by_update:
            written.update(dict.fromkeys(_write_sent(model, owner, fields, group), "sent"))
            continue
        group = [(row_id, ref) for row_id, ref in group if row_id in still_held]
        if group:
            refs = Case(*[When(id=row_id, then=Value(ref)) for row_id, ref in group], output_field=CharField())
            model.objects.filter(id__in=[row_id for row_id, _ in group]).update(**dict(fields, provider_ref=refs))
            written.update(dict.fromkeys((row_id for row_id, _ in group), "sent"))
    return written


def _write_sent(model, owner: str, fields: dict, group: list) -> list:
    """PostgreSQL: FIELDS and each row's provider reference written on the rows of GROUP
    ((row id, reference)) still leased to OWNER, in one statement of one shape whatever
    the batch's size (so prepared once: balise.db.rows); the ids written."""
    names = sorted(name for name in fields if name != "provider_ref")
    ids, refs = zip(*group)
    return [row_id for (row_id,) in rows(_sent_sql(model, tuple(names)), [
        *(fields[name] for name in names), list(ids), list(refs), owner, SENDING])]


@functools.cache
def _sent_sql(model, names: tuple[str, ...]) -> str:
    meta = model._meta
    table = connection.ops.quote_name(meta.db_table)
    key = column(meta, "id")
    sets = ", ".join(f"{column(meta, name)} = %s" for name in names)
    return (f"UPDATE {table} SET {sets}, {column(meta, 'provider_ref')} = sent.ref "
            f"FROM unnest(%s::uuid[], %s::text[]) AS sent(id, ref) "
            f"WHERE {table}.{key} = sent.id AND {table}.{column(meta, 'lease_owner')} = %s "
            f"AND {table}.{column(meta, 'state')} = %s RETURNING {table}.{key}")
