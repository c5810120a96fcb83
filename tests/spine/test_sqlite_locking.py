"""SQLite named by a sqlite:/// DATABASE_URL (how the browser tests start `balise serve`)
gets the same connection options as the data dir's file. Without them a transaction
BEGINs DEFERRED: it reads, another connection commits a write, and its own first write
then fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT: an upgrade never
waits on the busy timeout). That was the 500 on a contact's answer and the 503 on a
device's fixes under load."""

from __future__ import annotations

import sqlite3

import pytest
from django.db.utils import ConnectionHandler

from balise import settings as balise_settings


def _wrapper(databases: dict):
    return ConnectionHandler(databases)["default"]


def _begin(conn) -> None:
    """What the outermost transaction.atomic() does on this connection."""
    conn.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)


def _end(conn) -> None:
    conn.commit()
    conn.set_autocommit(True)


@pytest.mark.parametrize("source", ["data dir", "DATABASE_URL"])
def test_a_transaction_that_reads_then_writes_is_never_refused_by_a_concurrent_writer(source, tmp_path, monkeypatch,
                                                                                     django_db_blocker):
    path = tmp_path / "balise.sqlite3"
    if source == "DATABASE_URL":
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.setattr(balise_settings, "DATA_DIR", tmp_path)
    databases = balise_settings._databases()
    assert databases["default"]["NAME"] == str(path)

    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")  # (as a file in use always is: it persists)
    setup.execute("CREATE TABLE alert (id INTEGER PRIMARY KEY, state TEXT)")
    setup.execute("INSERT INTO alert VALUES (1, 'open')")
    setup.commit()
    setup.close()

    web = _wrapper(databases)
    # (a connection of its own to a file of its own, not the test database)
    with django_db_blocker.unblock():
        _read_then_write(web, path)

    check = sqlite3.connect(path)
    assert check.execute("SELECT state FROM alert").fetchone()[0] == "acknowledged"
    check.close()


def _read_then_write(web, path) -> None:
    try:
        # A contact's answer: read the alert, then write, in one transaction...
        _begin(web)
        with web.cursor() as cursor:
            cursor.execute("SELECT state FROM alert WHERE id = 1")
            assert cursor.fetchone()[0] == "open"

            # ...while the dispatcher (another connection, waiting on nothing) writes.
            dispatcher = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                dispatcher.execute("UPDATE alert SET state = 'escalated' WHERE id = 1")
                refused = False
            except sqlite3.OperationalError as exc:
                refused = "locked" in str(exc)
            dispatcher.close()

            # The answer's write goes through: its transaction took the lock at BEGIN,
            # and the dispatcher's write waits for it (here, with no timeout, is refused).
            cursor.execute("UPDATE alert SET state = 'acknowledged' WHERE id = 1")
        _end(web)
        assert refused

        with web.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] == 20_000
            cursor.execute("PRAGMA synchronous")
            assert cursor.fetchone()[0] == 1  # NORMAL
    finally:
        web.close()


def test_options_given_in_the_url_win(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite3'}?timeout=3")
    options = balise_settings._databases()["default"]["OPTIONS"]
    assert options["timeout"] == 3
    assert options["transaction_mode"] == "IMMEDIATE"
