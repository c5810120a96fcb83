"""Row locks, one way everywhere; the hot paths' statements, prepared where the database can."""

from __future__ import annotations

import functools
import time


def for_update(queryset, *, skip_locked: bool = False):
    """QUERYSET's rows locked for update until the transaction ends, as PostgreSQL's
    FOR NO KEY UPDATE OF the queryset's own table: it does not block the inserts that
    reference the row (fixes, answers, deliveries take FOR KEY SHARE on it), and rows
    joined by select_related stay unlocked (an alert's lock must not hold its
    association and person). SKIP_LOCKED: rows another transaction holds are left out.
    SQLite has no row locks: its write transactions are serialised anyway."""
    return queryset.select_for_update(skip_locked=skip_locked, no_key=True, of=("self",))


def column(meta, name: str) -> str:
    """The quoted column of field NAME of a model (its _meta), for the hot paths' SQL."""
    from django.db import connection

    return connection.ops.quote_name(meta.get_field(name).column)


def rows(sql: str, params) -> list[tuple]:
    """The rows of SQL (raw, %s placeholders), a statement of the hot paths run again and
    again (heartbeats, presses). On PostgreSQL it is prepared on its connection the first
    time and its plan kept (psycopg's cache): Django binds on the client, so the server
    plans every statement anew, and planning the heartbeat's SELECT cost it six times
    running it (0.6 ms against 0.1). Run through Django's cursor wrapper all the same: its
    errors, its query log and its execute wrappers (the tests' statement counts) see it.
    Not prepared where the settings leave prepared statements off (BALISE_DB_PREPARE=0)."""
    from django.db import connection

    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = _prepared_cursor()(connection.connection)
    started = time.monotonic()
    with connection.make_cursor(raw) as cursor:
        try:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
        finally:
            # Django's debug cursor logs the statement psycopg last sent, which a prepared
            # one does not keep (None in the log): logged here as written, without its values.
            if connection.queries_logged:
                connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


@functools.cache
def _prepared_cursor():
    import psycopg  # (only where PostgreSQL is used)

    class PreparedCursor(psycopg.Cursor):
        """A server-binding cursor whose every statement is prepared (see rows)."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparedCursor
