"""The durable local queue: alerts, fixes, heartbeats and evidence waiting for the server.

Everything the station owes the server is written here (SQLite, WAL,
synchronous=FULL) before the first attempt, so a crash, a restart or a long
offline period delays it but never loses it. Alerts carry the client id they
were born with: every retry is the same alert. What the server refuses for
good (a 4xx other than 408/429) is dropped from the queue and recorded in
``dropped``.

The evidence lane holds the sealed records of the room recordings: one row per
record, FIFO per session, deleted only once the server's signed receipt has been
checked; a record the server refuses for good is set aside (``state =
'rejected'``, body kept), never deleted.

The copy of the person's contacts and the record of the SMS the station sent
itself through its modem live here too, and the incidents (episodes the server must
hear of once it is reachable again: its outage, alerts or evidence it refused), one
row per episode, not per retry.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    client_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    gesture TEXT NOT NULL,
    button TEXT NOT NULL DEFAULT '',
    triggered_at TEXT NOT NULL,
    created_ts REAL NOT NULL,
    fixes TEXT NOT NULL,
    sms_sent_by_device INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',      -- pending | delivered | dropped
    closed INTEGER NOT NULL DEFAULT 0,          -- the server closed it (no more fixes)
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ts REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    delivered_ts REAL,
    server_id INTEGER,
    fallback TEXT NOT NULL DEFAULT 'none'       -- none | done | partial | failed | skipped
);
CREATE TABLE IF NOT EXISTS fixes (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES alerts(client_id),
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',      -- pending | sent | dropped
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ts REAL NOT NULL DEFAULT 0,
    created_ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fixes_pending ON fixes(state, client_id);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),      -- only the latest one matters
    payload TEXT NOT NULL,
    created_ts REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ts REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fallback_sms (
    client_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    state TEXT NOT NULL,                        -- sent | failed
    detail TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    PRIMARY KEY (client_id, contact_id)
);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    payload TEXT NOT NULL,
    fetched_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dropped (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    what TEXT NOT NULL,
    ref TEXT NOT NULL,
    status INTEGER,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,                       -- the record's seq in its session: 0 open, 1..n, n+1 close
    kind TEXT NOT NULL,
    body TEXT NOT NULL,                         -- SealedUpload.to_json()
    state TEXT NOT NULL DEFAULT 'pending',      -- pending | rejected (kept for the association)
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ts REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_ts REAL NOT NULL,
    UNIQUE (session, seq)
);
CREATE INDEX IF NOT EXISTS evidence_pending ON evidence(state, session, seq);
CREATE TABLE IF NOT EXISTS evidence_sessions (
    session TEXT PRIMARY KEY,
    alert TEXT NOT NULL,
    started_ts REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'recording',    -- recording | suspended | closed | interrupted (no close record)
    records INTEGER NOT NULL DEFAULT 0,         -- records made
    delivered INTEGER NOT NULL DEFAULT 0,       -- records with a checked receipt
    last_receipt TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    ended_ts REAL,
    resume TEXT NOT NULL DEFAULT ''             -- the recorder's state after its last queued record
);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,                        -- the episode's id: the server counts a report once
    kind TEXT NOT NULL,                         -- server_unreachable | alert_refused | evidence_rejected
    started_ts REAL NOT NULL,
    ended_ts REAL,                              -- NULL while it goes on
    refs TEXT NOT NULL DEFAULT '[]',            -- what was refused (alert ids, session:seq), once each
    reported INTEGER NOT NULL DEFAULT 0         -- a heartbeat carrying it was taken by the server
);
"""

# Columns added after a station's queue was created: (table, column, definition).
ADDED_COLUMNS = (("evidence_sessions", "resume", "TEXT NOT NULL DEFAULT ''"),)


@dataclass(frozen=True)
class AlertRow:
    client_id: str
    kind: str
    gesture: str
    button: str
    triggered_at: str
    created_ts: float
    fixes: list[dict[str, Any]]
    sms_sent_by_device: bool
    state: str
    closed: bool
    attempts: int
    next_attempt_ts: float
    last_error: str
    fallback: str
    delivered_ts: float | None = None

    def payload(self, sms_sent_to_contacts: list[int] | None = None) -> dict[str, Any]:
        """The body of ``POST /alerts``; ``sms_sent_to_contacts``: contacts the modem already texted."""
        return {
            "client_id": self.client_id,
            "kind": self.kind,
            "gesture": self.gesture,
            "triggered_at": self.triggered_at or None,
            "fixes": self.fixes,
            "sms_sent_by_device": self.sms_sent_by_device,
            "sms_sent_to_contacts": sorted(sms_sent_to_contacts or []),
        }


@dataclass(frozen=True)
class EvidenceRow:
    id: int
    session: str
    seq: int
    kind: str
    body: dict[str, Any]
    state: str
    attempts: int
    next_attempt_ts: float


class Outbox:
    """SQLite-backed queue. Every method is one short transaction; safe from several threads."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)  # contacts' numbers live here
        os.close(fd)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        for table, column, definition in ADDED_COLUMNS:
            if column not in {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- alerts -------------------------------------------------------------
    def add_alert(self, client_id: str, kind: str, gesture: str, triggered_at: str,
                  fixes: list[dict[str, Any]], button: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO alerts (client_id, kind, gesture, button, triggered_at, created_ts, fixes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (client_id, kind, gesture, button, triggered_at, self.clock(), json.dumps(fixes)),
            )

    def alert(self, client_id: str) -> AlertRow | None:
        rows = self._query("SELECT * FROM alerts WHERE client_id = ?", (client_id,))
        return _alert(rows[0]) if rows else None

    def alerts(self, where: str = "1", args: tuple[Any, ...] = ()) -> list[AlertRow]:
        return [_alert(r) for r in self._query(f"SELECT * FROM alerts WHERE {where} ORDER BY created_ts", args)]

    def alert_delivered(self, client_id: str, server_id: int | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET state = 'delivered', delivered_ts = ?, server_id = ?, last_error = ''"
                " WHERE client_id = ? AND state = 'pending'",
                (self.clock(), server_id, client_id),
            )

    def alert_retry(self, client_id: str, next_ts: float, error: str) -> None:
        with self._tx() as db:
            self._alert_retry(db, client_id, next_ts, error)

    @staticmethod
    def _alert_retry(db: sqlite3.Connection, client_id: str, next_ts: float, error: str) -> None:
        db.execute("UPDATE alerts SET attempts = attempts + 1, next_attempt_ts = ?, last_error = ? WHERE client_id = ?",
                   (next_ts, error, client_id))

    def alert_refused(self, client_id: str, next_ts: float, error: str) -> None:
        """The server refused the alert: it stays queued (the modem fallback and the next
        attempt still see it), marked refused for ``status``, and is tried again later and
        at the next start (which is what follows a re-pairing). The refusal joins the
        episode of refused alerts in progress (reported once it ends)."""
        with self._tx() as db:
            self._alert_retry(db, client_id, next_ts, REFUSED + error)
            self._incident(db, "alert_refused", client_id)

    def alert_stripped(self, client_id: str) -> None:
        """Keeps only what the server cannot refuse (kind, gesture, id): a clock gone wrong
        or a fix out of range must not cost the alert itself."""
        with self._tx() as db:
            db.execute("UPDATE alerts SET fixes = '[]', triggered_at = '', next_attempt_ts = 0 WHERE client_id = ?",
                       (client_id,))

    def retry_refused(self) -> int:
        """After a re-pairing: the alerts (and evidence records) the old token could not
        deliver go at once. Returns the number of alerts."""
        with self._tx() as db:
            db.execute("UPDATE evidence SET next_attempt_ts = 0 WHERE state = 'pending' AND last_error LIKE ?",
                       (REFUSED + "%",))
            db.execute("UPDATE fixes SET next_attempt_ts = 0 WHERE state = 'pending'")
            return db.execute("UPDATE alerts SET next_attempt_ts = 0 WHERE state = 'pending' AND last_error LIKE ?",
                              (REFUSED + "%",)).rowcount

    def alert_dropped(self, client_id: str, status: int | None, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET state = 'dropped', closed = 1, last_error = ? WHERE client_id = ?",
                (error, client_id),
            )
            db.execute("UPDATE fixes SET state = 'dropped' WHERE client_id = ? AND state = 'pending'", (client_id,))
            self._record_drop(db, "alert", client_id, status, error)

    def alert_closed(self, client_id: str) -> None:
        """The alert left the server's open list. Its queued fixes are still sent: after a
        cancel under duress the server keeps them (answering 409 as for any closed alert)."""
        with self._tx() as db:
            db.execute("UPDATE alerts SET closed = 1 WHERE client_id = ?", (client_id,))

    def set_fallback(self, client_id: str, fallback: str, sms_sent_by_device: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET fallback = ?, sms_sent_by_device = ?, next_attempt_ts = 0 WHERE client_id = ?",
                (fallback, int(sms_sent_by_device), client_id),
            )

    # -- fixes --------------------------------------------------------------
    def add_fix(self, client_id: str, fix: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO fixes (id, client_id, payload, created_ts) VALUES (?, ?, ?, ?)",
                (fix["id"], client_id, json.dumps(fix), self.clock()),
            )

    def due_fix_batches(self, now: float, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
        """Pending fixes of alerts the server already has, grouped by alert."""
        rows = self._query(
            "SELECT f.client_id, f.payload FROM fixes f JOIN alerts a USING (client_id)"
            " WHERE f.state = 'pending' AND f.next_attempt_ts <= ? AND a.state = 'delivered'"
            " ORDER BY f.created_ts",
            (now,),
        )
        out: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            batch = out.setdefault(r["client_id"], [])
            if len(batch) < limit:
                batch.append(json.loads(r["payload"]))
        return out

    def next_fix_attempt(self) -> float | None:
        rows = self._query(
            "SELECT MIN(f.next_attempt_ts) FROM fixes f JOIN alerts a USING (client_id)"
            " WHERE f.state = 'pending' AND a.state = 'delivered'"
        )
        return rows[0][0]

    def fixes_sent(self, ids: list[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE fixes SET state = 'sent' WHERE id = ?", [(i,) for i in ids])

    def fixes_retry(self, ids: list[str], next_ts: float) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE fixes SET attempts = attempts + 1, next_attempt_ts = ? WHERE id = ?",
                [(next_ts, i) for i in ids],
            )

    def fixes_dropped(self, client_id: str, ids: list[str], status: int | None, error: str,
                      record: bool = True) -> None:
        """``record=False``: out of the queue without a trace in ``dropped`` (the 409 of a
        closed alert, the same under duress: nothing in ``status`` may tell them apart)."""
        with self._tx() as db:
            db.executemany("UPDATE fixes SET state = 'dropped' WHERE id = ?", [(i,) for i in ids])
            if record:
                self._record_drop(db, "fixes", client_id, status, error)

    def fix_attempts(self, ids: list[str]) -> int:
        marks = ",".join("?" * len(ids))
        rows = self._query(f"SELECT MAX(attempts) FROM fixes WHERE id IN ({marks})", tuple(ids))
        return rows[0][0] or 0

    # -- heartbeat ----------------------------------------------------------
    def put_heartbeat(self, payload: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO heartbeat (id, payload, created_ts) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, created_ts = excluded.created_ts",
                (json.dumps(payload), self.clock()),
            )

    def heartbeat(self) -> tuple[dict[str, Any], int, float] | None:
        rows = self._query("SELECT payload, attempts, next_attempt_ts FROM heartbeat")
        if not rows:
            return None
        return json.loads(rows[0]["payload"]), rows[0]["attempts"], rows[0]["next_attempt_ts"]

    def heartbeat_done(self, payload: dict[str, Any], status: int | None = None, error: str = "") -> None:
        """Removes the heartbeat that was sent, unless a newer one replaced it meanwhile."""
        with self._tx() as db:
            db.execute("DELETE FROM heartbeat WHERE payload = ?", (json.dumps(payload),))
            if error:
                self._record_drop(db, "heartbeat", "", status, error)

    def due_now(self) -> None:
        """The server answers again: what waits for a backoff (alerts, fixes, heartbeat) goes now."""
        with self._tx() as db:
            db.execute("UPDATE alerts SET next_attempt_ts = 0 WHERE state = 'pending'")
            db.execute("UPDATE fixes SET next_attempt_ts = 0 WHERE state = 'pending'")
            db.execute("UPDATE heartbeat SET next_attempt_ts = 0")

    def heartbeat_retry(self, next_ts: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE heartbeat SET attempts = attempts + 1, next_attempt_ts = ?", (next_ts,))

    # -- contacts, fallback SMS, meta ---------------------------------------
    def save_contacts(self, payload: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO contacts (id, payload, fetched_ts) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, fetched_ts = excluded.fetched_ts",
                (json.dumps(payload), self.clock()),
            )

    def clear_contacts(self) -> None:
        """Paired again (perhaps for another person): the old copy must not be texted."""
        with self._tx() as db:
            db.execute("DELETE FROM contacts")

    def contacts(self) -> tuple[dict[str, Any], float] | None:
        rows = self._query("SELECT payload, fetched_ts FROM contacts")
        return (json.loads(rows[0]["payload"]), rows[0]["fetched_ts"]) if rows else None

    def sms_record(self, client_id: str) -> dict[str, str]:
        rows = self._query("SELECT contact_id, state FROM fallback_sms WHERE client_id = ?", (client_id,))
        return {r["contact_id"]: r["state"] for r in rows}

    def sms_sent_to(self, client_id: str) -> list[int]:
        """Ids of the contacts the modem texted for this alert (the on-call line is not a contact)."""
        return sorted(int(c) for c, state in self.sms_record(client_id).items() if state == "sent" and c.isdigit())

    def record_sms(self, client_id: str, contact_id: str, state: str, detail: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO fallback_sms (client_id, contact_id, state, detail, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (client_id, contact_id) DO UPDATE SET state = excluded.state,"
                " detail = excluded.detail, at = excluded.at",
                (client_id, contact_id, state, detail, self.clock()),
            )

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def meta(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def dropped(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM dropped ORDER BY seq")]

    # -- evidence -----------------------------------------------------------
    def evidence_session_started(self, session: str, alert: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO evidence_sessions (session, alert, started_ts) VALUES (?, ?, ?)",
                       (session, alert, self.clock()))

    def evidence_session_ended(self, session: str, state: str, reason: str) -> None:
        """``closed`` (the close record is queued), ``suspended`` (stopped without one, to
        be resumed at the next start) or ``interrupted`` (it never will be)."""
        with self._tx() as db:
            db.execute("UPDATE evidence_sessions SET state = ?, reason = ?, ended_ts = ?"
                       " WHERE session = ? AND state IN ('recording', 'suspended')",
                       (state, reason[:64], self.clock(), session))

    def evidence_session_resumed(self, session: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE evidence_sessions SET state = 'recording', reason = '', ended_ts = NULL"
                       " WHERE session = ?", (session,))

    def evidence_unfinished(self) -> list[tuple[str, str, dict[str, Any], str]]:
        """After a restart: (session, alert, recorder state, reason it stopped: '' after a
        crash) of every session that was
        recording or suspended when the station stopped, newest first. Those without a
        state (a station of an older version) cannot be resumed: marked interrupted."""
        with self._tx() as db:
            rows = db.execute("SELECT session, alert, resume, reason FROM evidence_sessions WHERE state IN"
                              " ('recording', 'suspended') ORDER BY started_ts DESC").fetchall()
            db.execute("UPDATE evidence_sessions SET state = 'interrupted', reason = 'station-restart',"
                       " ended_ts = ? WHERE state IN ('recording', 'suspended') AND resume = ''", (self.clock(),))
        return [(r["session"], r["alert"], json.loads(r["resume"]), r["reason"]) for r in rows if r["resume"]]

    def evidence_sessions(self, alert: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE alert = ?", (alert,)) if alert else ("", ())
        return [dict(r) for r in self._query(f"SELECT * FROM evidence_sessions {where} ORDER BY started_ts", args)]

    def put_evidence(self, session: str, seq: int, kind: str, body: dict[str, Any],
                     resume: dict[str, Any] | None = None) -> None:
        """Queues one sealed record (idempotent: the same (session, seq) twice is kept once)
        and, in the same transaction, the recorder's state after it (``resume``; none after
        the close record), so that a restart goes on exactly from the last queued record."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO evidence (session, seq, kind, body, created_ts) VALUES (?, ?, ?, ?, ?)",
                (session, seq, kind, json.dumps(body), self.clock()),
            )
            if cur.rowcount:
                db.execute("UPDATE evidence_sessions SET records = records + 1, resume = ? WHERE session = ?",
                           (json.dumps(resume) if resume else "", session))

    def evidence_heads(self, now: float) -> list[EvidenceRow]:
        """The oldest pending record of each session, when it is due: FIFO within a session,
        sessions independent of each other (oldest session first)."""
        rows = self._query(
            "SELECT e.* FROM evidence e JOIN (SELECT session, MIN(seq) AS seq FROM evidence"
            " WHERE state = 'pending' GROUP BY session) h USING (session, seq)"
            " WHERE e.next_attempt_ts <= ? ORDER BY e.id",
            (now,),
        )
        return [_evidence(r) for r in rows]

    def next_evidence_attempt(self) -> float | None:
        rows = self._query(
            "SELECT MIN(e.next_attempt_ts) FROM evidence e JOIN (SELECT session, MIN(seq) AS seq FROM evidence"
            " WHERE state = 'pending' GROUP BY session) h USING (session, seq)"
        )
        return rows[0][0]

    def evidence_delivered(self, row_id: int, receipt_sha256: str) -> None:
        """The server's receipt was checked: the local copy goes."""
        with self._tx() as db:
            row = db.execute("SELECT session FROM evidence WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return
            db.execute("DELETE FROM evidence WHERE id = ?", (row_id,))
            db.execute("UPDATE evidence_sessions SET delivered = delivered + 1, last_receipt = ? WHERE session = ?",
                       (receipt_sha256, row["session"]))

    def evidence_retry(self, row_id: int, next_ts: float, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE evidence SET attempts = attempts + 1, next_attempt_ts = ?, last_error = ?"
                       " WHERE id = ?", (next_ts, error[:500], row_id))

    def evidence_retry_now(self) -> None:
        """The server is back: waiting records need not wait for the end of their backoff."""
        with self._tx() as db:
            db.execute("UPDATE evidence SET next_attempt_ts = 0 WHERE state = 'pending'")

    def evidence_rejected(self, row_id: int, status: int | None, error: str) -> None:
        """Refused for good: set aside with its body for the association, never deleted."""
        with self._tx() as db:
            row = db.execute("SELECT session, seq FROM evidence WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return
            db.execute("UPDATE evidence SET state = 'rejected', last_error = ? WHERE id = ?", (error[:500], row_id))
            self._record_drop(db, "evidence", f"{row['session']}:{row['seq']}", status, error)
            self._incident(db, "evidence_rejected", f"{row['session']}:{row['seq']}")

    def evidence(self, state: str = "pending") -> list[EvidenceRow]:
        return [_evidence(r) for r in self._query("SELECT * FROM evidence WHERE state = ? ORDER BY id", (state,))]

    def counts(self) -> dict[str, int]:
        q = self._query
        return {
            "alerts_pending": q("SELECT COUNT(*) FROM alerts WHERE state = 'pending'")[0][0],
            "alerts_refused": q("SELECT COUNT(*) FROM alerts WHERE state = 'pending' AND last_error LIKE ?",
                                (REFUSED + "%",))[0][0],
            "alerts_open": q("SELECT COUNT(*) FROM alerts WHERE state = 'delivered' AND closed = 0")[0][0],
            "fixes_pending": q("SELECT COUNT(*) FROM fixes WHERE state = 'pending'")[0][0],
            "heartbeat_pending": q("SELECT COUNT(*) FROM heartbeat")[0][0],
            "evidence_pending": q("SELECT COUNT(*) FROM evidence WHERE state = 'pending'")[0][0],
            "evidence_rejected": q("SELECT COUNT(*) FROM evidence WHERE state = 'rejected'")[0][0],
            "recordings": q("SELECT COUNT(*) FROM evidence_sessions WHERE state = 'recording'")[0][0],
            "dropped": q("SELECT COUNT(*) FROM dropped")[0][0],
        }

    # -- incidents ------------------------------------------------------------
    def incident_started(self, kind: str) -> None:
        """An episode begins (a no-op while one of that kind goes on)."""
        with self._tx() as db:
            self._incident(db, kind, "")

    def incident_ended(self, kind: str, shorter_than_s: float = 0.0) -> None:
        """The episode in progress ends; one shorter than ``shorter_than_s`` is forgotten."""
        with self._tx() as db:
            now = self.clock()
            db.execute("DELETE FROM incidents WHERE kind = ? AND ended_ts IS NULL AND started_ts > ?",
                       (kind, now - shorter_than_s))
            db.execute("UPDATE incidents SET ended_ts = ? WHERE kind = ? AND ended_ts IS NULL", (now, kind))

    def incidents_going_on(self) -> set[str]:
        return {r[0] for r in self._query("SELECT kind FROM incidents WHERE ended_ts IS NULL")}

    def incidents_to_report(self, ending: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Episodes over and not yet taken by the server; those of the kinds ``ending`` end
        now (refusals: what was refused so far is one episode, the next refusal a new one)."""
        with self._tx() as db:
            for kind in ending:
                db.execute("UPDATE incidents SET ended_ts = ? WHERE kind = ? AND ended_ts IS NULL",
                           (self.clock(), kind))
            rows = db.execute("SELECT * FROM incidents WHERE ended_ts IS NOT NULL AND reported = 0"
                              " ORDER BY started_ts").fetchall()
        return [{"id": r["id"], "kind": r["kind"], "started_ts": r["started_ts"], "ended_ts": r["ended_ts"],
                 "count": max(1, len(json.loads(r["refs"])))} for r in rows]

    def incidents_reported(self, ids: list[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE incidents SET reported = 1 WHERE id = ?", [(i,) for i in ids])

    def _incident(self, db: sqlite3.Connection, kind: str, ref: str) -> None:
        row = db.execute("SELECT id, refs FROM incidents WHERE kind = ? AND ended_ts IS NULL", (kind,)).fetchone()
        if row is None:
            db.execute("INSERT INTO incidents (id, kind, started_ts, refs) VALUES (?, ?, ?, ?)",
                       (str(uuid.uuid4()), kind, self.clock(), json.dumps([ref] if ref else [])))
        elif ref and ref not in (refs := json.loads(row["refs"])):
            db.execute("UPDATE incidents SET refs = ? WHERE id = ?", (json.dumps(refs + [ref]), row["id"]))

    def _record_drop(self, db: sqlite3.Connection, what: str, ref: str, status: int | None, error: str) -> None:
        db.execute(
            "INSERT INTO dropped (what, ref, status, error, at) VALUES (?, ?, ?, ?, ?)",
            (what, ref, status, error[:500], self.clock()),
        )


REFUSED = "refused: "  # prefix of last_error for an alert the server refused


def _alert(r: sqlite3.Row) -> AlertRow:
    return AlertRow(
        client_id=r["client_id"], kind=r["kind"], gesture=r["gesture"], button=r["button"],
        triggered_at=r["triggered_at"], created_ts=r["created_ts"], fixes=json.loads(r["fixes"]),
        sms_sent_by_device=bool(r["sms_sent_by_device"]), state=r["state"], closed=bool(r["closed"]),
        attempts=r["attempts"], next_attempt_ts=r["next_attempt_ts"], last_error=r["last_error"],
        fallback=r["fallback"], delivered_ts=r["delivered_ts"],
    )


def _evidence(r: sqlite3.Row) -> EvidenceRow:
    return EvidenceRow(id=r["id"], session=r["session"], seq=r["seq"], kind=r["kind"], body=json.loads(r["body"]),
                       state=r["state"], attempts=r["attempts"], next_attempt_ts=r["next_attempt_ts"])
