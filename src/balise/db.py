"""Row locks, one way everywhere."""

from __future__ import annotations


def for_update(queryset, *, skip_locked: bool = False):
    """QUERYSET's rows locked for update until the transaction ends, as PostgreSQL's
    FOR NO KEY UPDATE OF the queryset's own table: it does not block the inserts that
    reference the row (fixes, answers, deliveries take FOR KEY SHARE on it), and rows
    joined by select_related stay unlocked (an alert's lock must not hold its
    association and person). SKIP_LOCKED: rows another transaction holds are left out.
    SQLite has no row locks: its write transactions are serialised anyway."""
    return queryset.select_for_update(skip_locked=skip_locked, no_key=True, of=("self",))
