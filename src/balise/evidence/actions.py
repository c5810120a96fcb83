"""Evidence operations: receive records, issue truncation notices, keep custody, export.

Every access to a case (listen, export, legal hold, deletion) first commits a custody
record naming who, when, why and under which legal reference; the access happens only
once that record is written. Staff reach only cases of their own associations.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from balise.alerts.models import Alert
from balise.associations.models import Membership
from balise.associations.scoping import association_ids
from balise.db import for_update, rows
from balise_evidence import bag, crypto, hint, intake, ledger, tsa, verifier
from balise_evidence.canonical import b64e

from . import conf, keyring
from .models import Case, CustodyRecord, DeviceKey, KeyLogEntry, LogEntry, Record, TimestampToken

log = logging.getLogger("balise.evidence")


class EvidenceError(Exception):
    def __init__(self, code: str, message, status: int = 409, field: str | None = None, retry: bool = False):
        super().__init__(str(message))
        self.code, self.message, self.status, self.field, self.retry = code, str(message), status, field, retry


# --- keys -----------------------------------------------------------------------------


def server_keys() -> dict:
    k = keyring.sync()
    return {
        "seal_public_pem": k.seal.public_pem,
        "seal_fingerprint": k.seal.fingerprint,
        "signing_public_pem": k.signer.public_pem,
        "signing_fingerprint": k.signer.fingerprint,
        "export_public_pem": k.exporter.public_pem,
        "export_fingerprint": k.exporter.fingerprint,
    }


def key_log_document() -> bytes:
    """The platform's key log, as published (see balise_evidence.keylog)."""
    return keyring.document()


def key_log_pin() -> str:
    """The fingerprint of the key log's first signing key: what the association publishes
    out of band, for experts to pin (``--pin``)."""
    keyring.sync()
    first = KeyLogEntry.objects.order_by("index").first()
    return first.fingerprint if first else ""


def rotate_key(role: str) -> str:
    """Replace the server's ROLE key (signing, export, seal); past cases keep theirs."""
    try:
        return keyring.rotate(role)
    except keyring.KeyringError as exc:
        raise EvidenceError("keys", str(exc), 409, "role") from None


def register_device_key(device, public_key_pem: str) -> tuple[DeviceKey, bool]:
    """Register the device's P-256 public key; idempotent for the same key. A device
    has one active key: a different one needs staff to revoke the old one first."""
    try:
        key = crypto.load_device_public_key(public_key_pem)
    except crypto.CryptoError:
        raise EvidenceError("invalid", _("public_key_pem must be an ECDSA P-256 public key in PEM"), 422,
                            "public_key_pem") from None
    fp = crypto.fingerprint(key)
    with transaction.atomic():
        existing = DeviceKey.objects.filter(fingerprint=fp).first()
        if existing is not None:
            if existing.device_id != device.pk or existing.revoked_at is not None:
                raise EvidenceError("key_taken", _("this key is registered to another device or revoked"), 409,
                                    "public_key_pem")
            return existing, False
        if DeviceKey.objects.filter(device=device, revoked_at__isnull=True).exists():
            raise EvidenceError("key_exists", _("this device already has an evidence key"), 409, "public_key_pem")
        created = DeviceKey.objects.create(device=device, public_key_pem=crypto.public_pem(key), fingerprint=fp)
        keyring.add_device(created)
        return created, True


# --- at rest --------------------------------------------------------------------------


def _case_key(case: Case) -> bytes:
    if case.wrapped_key is None:
        raise EvidenceError("destroyed", _("this case has been destroyed"), 410)
    return crypto.open_blob(conf.keys().master, f"case|{case.session}".encode(), bytes(case.wrapped_key))


def _new_wrapped_key(session: uuid.UUID) -> bytes:
    return crypto.seal_blob(conf.keys().master, f"case|{session}".encode(), os.urandom(32))


def _ciphertext(case: Case, case_key: bytes, record: Record) -> bytes:
    return crypto.open_blob(case_key, record.header_sha256.encode(), bytes(record.blob))


# --- receiving records ------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    entry: LogEntry
    duplicate: bool
    conflict: bool

    def as_json(self) -> dict:
        return {"receipt": json.loads(bytes(self.entry.data)), "signature": b64e(bytes(self.entry.signature)),
                "sha256": self.entry.sha256, "duplicate": self.duplicate, "conflict": self.conflict}


def _now_text(now: datetime) -> str:
    return now.astimezone(dt_timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _append_log(case: Case, body: dict, kind: str, record: Record | None) -> LogEntry:
    entry = ledger.append(ledger.Head(case.log_index, case.log_head), body, keyring.sync().signer)
    row = LogEntry.objects.create(case=case, index=entry.body["index"], kind=kind, record=record, data=entry.data,
                                  sha256=entry.sha256, signature=entry.signature)
    case.log_index, case.log_head = row.index, row.sha256
    return row


def _live_keys(device):
    """The device's evidence keys not revoked, the first registered first: the first is its key."""
    return DeviceKey.objects.filter(device=device, revoked_at__isnull=True).order_by("id")


def _device_key(device) -> DeviceKey:
    key = _live_keys(device).first()
    if key is None:
        raise EvidenceError("no_device_key", _("register the device's evidence key first"), 409, "header.device_key")
    return key


def recording_hint(device_id: int, duress_client_ids: list[str]) -> str | None:
    """The alerts the device must go on recording and tracking although it was told they
    are closed (cancelled under duress, not yet closed by the association), sealed to its
    evidence key (balise_evidence.hint); None for a device without one. Every heartbeat
    asks: its key is read by one statement built once, and loaded once per process."""
    found = rows(_device_key_sql(connection.vendor), [device_id])
    if not found:
        return None
    return hint.seal(_public_key(found[0][0]), duress_client_ids)


# A stand-in for the device, compiled into _device_key_sql's statement.
_DEVICE = -730_199_993


@functools.cache
def _device_key_sql(vendor: str) -> str:
    """The PEM of the device's key (_live_keys), compiled by the ORM once per database."""
    sql, params = _live_keys(_DEVICE).values_list("public_key_pem")[:1].query.sql_with_params()
    assert list(params) == [_DEVICE], "the stand-in is the statement's one parameter"
    return sql


@functools.lru_cache(maxsize=4096)
def _public_key(pem: str):
    # (keyed by the key itself: a device's new key is a new entry, a revoked one is no longer asked for)
    return crypto.load_device_public_key(pem)


def _open_case(device, device_key: DeviceKey, header: dict) -> Case:
    alert = None
    if header.get("alert"):
        try:
            client_id = uuid.UUID(header["alert"])
            # the alert the press raised, or the open alert it joined (see alerts.actions)
            alert = (Alert.objects.filter(client_id=client_id, device=device).first()
                     or Alert.objects.filter(joined_presses__client_id=client_id,
                                             joined_presses__device=device).first())
        except ValueError:
            alert = None
    session = uuid.UUID(header["session"])
    try:
        with transaction.atomic():
            return Case.objects.create(
                reference=f"BAL-{timezone.now():%Y}-{secrets.token_hex(4).upper()}", session=session,
                association_id=device.association_id, device=device, device_key=device_key,
                person_id=device.holder_id, alert=alert, wrapped_key=_new_wrapped_key(session))
    except IntegrityError:
        return Case.objects.get(session=session)


def _seal(case: Case) -> crypto.SealKey:
    """The seal key (current or retired) this case's session key was sealed to."""
    opened = Record.objects.filter(case=case, kind="open").order_by("received_at").first()
    fingerprint = json.loads(bytes(opened.header))["server_key"] if opened else keyring.sync().seal.fingerprint
    try:
        return keyring.seal_for(fingerprint)
    except (keyring.KeyringError, crypto.CryptoError):
        raise EvidenceError("seal_key", _("the key this recording was sealed to is not available on this server"),
                            409) from None


def _seal_of_open(header: dict) -> crypto.SealKey:
    """A station that has not yet fetched the new seal key after a rotation still
    seals to a previous one: its recording is taken, never lost."""
    try:
        return keyring.seal_for(str(header.get("server_key", "")))
    except (keyring.KeyringError, crypto.CryptoError):
        return keyring.sync().seal  # the intake check names the mismatch


def _known(case: Case, header: dict | None, case_key: bytes) -> intake.Known:
    """What the checks of ``header`` need (all the records for a close record or None)."""
    rows = Record.objects.filter(case=case)
    if header is not None and header["kind"] != "close":
        rows = rows.filter(Q(kind="open") | Q(kind="close") | Q(seq__in=[header["seq"] - 1, header["seq"]]))
        rows = rows.defer("blob")  # the ciphertexts are needed only to check a close record
    by_hash = {r.header_sha256: r for r in rows}
    return intake.Known(
        records={h: json.loads(bytes(r.header)) for h, r in by_hash.items()},
        ciphertext_of=lambda digest: _ciphertext(case, case_key, by_hash[digest]),
    )


def _locked_case(session: str) -> Case | None:
    rows = list(for_update(Case.objects).select_related("device_key").filter(session=session)[:1])
    return rows[0] if rows else None


def accept_record(device, body) -> Accepted:
    """Check and store one uploaded record; returns its signed receipt. Idempotent."""
    header, _sig, _ct = intake.parse(body)  # shape errors first, before any lookup
    now = timezone.now()
    with transaction.atomic():
        case = _locked_case(header["session"])
        if case is None:
            if header["kind"] != "open":
                raise EvidenceError("predecessor_missing", _("the open record of this session has not arrived"),
                                    409, "header.prev", retry=True)
            device_key = _device_key(device)
            intake.check(body, device_public_key=crypto.load_device_public_key(device_key.public_key_pem),
                         seal_key=_seal_of_open(header), known=intake.Known(), max_cipher_bytes=conf.max_segment_bytes())
            _open_case(device, device_key, header)
            case = _locked_case(header["session"])
        if case.device_id != device.pk:
            raise EvidenceError("forbidden", _("this session belongs to another device"), 403, "header.session")
        if case.state == Case.State.DESTROYED:
            raise EvidenceError("destroyed", _("this case has been destroyed"), 410, "header.session")
        case_key = _case_key(case)
        verdict = intake.check(body, device_public_key=crypto.load_device_public_key(case.device_key.public_key_pem),
                               seal_key=_seal(case), known=_known(case, header, case_key),
                               max_cipher_bytes=conf.max_segment_bytes())
        if verdict.duplicate:
            entry = LogEntry.objects.select_related("record").get(case=case, record__header_sha256=verdict.sha256,
                                                                  kind="receipt")
            return Accepted(entry, True, entry.record.conflict)
        record = Record.objects.create(
            case=case, seq=header["seq"], kind=header["kind"], header=verdict.header_bytes,
            header_sha256=verdict.sha256, signature=verdict.signature, conflict=verdict.conflict,
            cipher_sha256=header.get("cipher_sha256", ""),
            blob=None if verdict.ciphertext is None else crypto.seal_blob(case_key, verdict.sha256.encode(),
                                                                          verdict.ciphertext))
        entry = _append_log(case, ledger.receipt_body(session=header["session"], at=_now_text(now), header=header,
                                                      header_sha256=verdict.sha256, conflict=verdict.conflict),
                            "receipt", record)
        case.last_record_at = now
        if header["kind"] == "segment" and not verdict.conflict:
            case.segments += 1
        sealed = header["kind"] == "close" and not verdict.conflict
        if sealed:
            case.recording, case.closed_at = Case.Recording.CLOSED, now
            if case.state == Case.State.ACTIVE:
                case.state = Case.State.SEALED
        elif case.recording == Case.Recording.TRUNCATED:
            case.recording = Case.Recording.RECORDING  # late records: the notice stays in the log, superseded
        case.save(update_fields=["log_index", "log_head", "last_record_at", "segments", "recording", "closed_at",
                                 "state"])
    if sealed or _timestamp_due(case, now):
        timestamp_log_head(case)
    return Accepted(entry, False, verdict.conflict)


def _timestamp_due(case: Case, now: datetime) -> bool:
    """True when a TSA is configured and the log's head has not been timestamped for
    ``BALISE_EVIDENCE_TSA_INTERVAL`` seconds."""
    if conf.tsa() is None:
        return False
    last = TimestampToken.objects.filter(case=case).order_by("-log_index").first()
    if last is None:
        return True
    return last.log_index < case.log_index and last.created_at <= now - timedelta(seconds=conf.tsa_interval_seconds())


def timestamp_open_logs(now: datetime | None = None) -> int:
    """Timestamp the log head of every open recording not timestamped for an interval,
    and the last entry of every closed or truncated recording whose token could not be
    had then (the authority was down: a later token still proves the log existed by its
    time, and without one the expert's check flags it missing). Run by every
    dispatcher's sweep and by ``balise evidence sweep``."""
    now = now or timezone.now()
    if conf.tsa() is None:
        return 0
    done = 0
    for case in Case.objects.filter(recording=Case.Recording.RECORDING):
        if _timestamp_due(case, now) and timestamp_log_head(case) is not None:
            done += 1
    unstamped = (Case.objects.filter(recording__in=[Case.Recording.CLOSED, Case.Recording.TRUNCATED],
                                     key_destroyed_at__isnull=True)
                 .exclude(Exists(TimestampToken.objects.filter(case=OuterRef("pk"), log_index=OuterRef("log_index")))))
    for case in unstamped:
        if timestamp_log_head(case) is not None:
            done += 1
    return done


def timestamp_log_head(case: Case) -> TimestampToken | None:
    """An RFC 3161 token on the last log entry, when a TSA is configured. Best effort:
    an unreachable authority leaves the case untimestamped, never unreceived."""
    authority = conf.tsa()
    if authority is None:
        return None
    entry = LogEntry.objects.filter(case=case).order_by("-index").first()
    if entry is None or TimestampToken.objects.filter(case=case, log_index=entry.index).exists():
        return None
    try:
        token = tsa.request(bytes(entry.data), authority.url, authority.ca_file, authority.cert_file)
    except tsa.TimestampError as exc:
        log.warning("evidence timestamp failed for case %s: %s", case.reference, exc)
        return None
    return TimestampToken.objects.create(case=case, log_index=entry.index, token=token)


# --- truncation and scheduled deletion ----------------------------------------------------


def issue_truncation_notices(now: datetime | None = None) -> list[Case]:
    """A server-signed notice for every recording silent too long without a close record."""
    now = now or timezone.now()
    silence = conf.silence_seconds()
    done = []
    candidates = Case.objects.filter(recording=Case.Recording.RECORDING,
                                     last_record_at__lt=now - timedelta(seconds=silence)).values_list("pk", flat=True)
    for pk in candidates:
        with transaction.atomic():
            case = for_update(Case.objects).get(pk=pk)
            if case.recording != Case.Recording.RECORDING or case.last_record_at >= now - timedelta(seconds=silence):
                continue
            last = Record.objects.filter(case=case, conflict=False).order_by("-seq").first()
            _append_log(case, ledger.truncation_body(
                session=str(case.session), at=_now_text(now), last_seq=last.seq, last_record_sha256=last.header_sha256,
                last_received_at=_now_text(case.last_record_at), silence_seconds=silence), "truncation", None)
            case.recording, case.truncated_at = Case.Recording.TRUNCATED, now
            if case.state == Case.State.ACTIVE:
                case.state = Case.State.SEALED
            case.save()
        timestamp_log_head(case)
        done.append(case)
    return done


def destroy_due(now: datetime | None = None) -> list[Case]:
    now = now or timezone.now()
    done = []
    for case in Case.objects.filter(state=Case.State.DELETION_PENDING, deletion_due_at__lte=now):
        with transaction.atomic():
            case = for_update(Case.objects).get(pk=case.pk)
            if case.state != Case.State.DELETION_PENDING:
                continue  # cancelled meanwhile: nothing happened, nothing is recorded
            _custody(case, SYSTEM, "destroy", _("scheduled deletion reached its date"), "")
            case.refresh_from_db(fields=["custody_index", "custody_head"])
            Record.objects.filter(case=case).update(blob=None)  # the one deliberate non-append
            case.wrapped_key, case.key_destroyed_at, case.state = None, now, Case.State.DESTROYED
            case.save()
        done.append(case)
    return done


def sweep(now: datetime | None = None) -> dict:
    return {"truncated": len(issue_truncation_notices(now)), "destroyed": len(destroy_due(now)),
            "timestamped": timestamp_open_logs(now)}


# --- custody and staff access ---------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    kind: str  # staff | device | system
    label: str
    user: object = None

    def as_json(self) -> dict:
        return {"kind": self.kind, "id": getattr(self.user, "pk", None), "name": self.label}


SYSTEM = Actor("system", "balise")


EVIDENCE_ROLES = (Membership.Role.ADMIN, Membership.Role.REFERENT)


def staff(user) -> Actor:
    return Actor("staff", user.get_username(), user)


def scoped_cases(user):
    if user.is_superuser:
        return Case.objects.all()
    return Case.objects.filter(association__in=association_ids(user))


def may_access(user, case: Case) -> bool:
    """Evidence is for the association's administrators and referents, not every staff member."""
    return user.is_superuser or user.memberships.filter(
        association_id=case.association_id, role__in=EVIDENCE_ROLES).exists()


def case_for(user, reference: str) -> Case:
    case = scoped_cases(user).filter(reference=reference).first()
    if case is None:
        raise EvidenceError("not_found", _("no such case"), 404, "reference")
    if not may_access(user, case):
        raise EvidenceError("forbidden", _("only the association's administrators and referents may access "
                                           "evidence"), 403)
    return case


def _custody(case: Case, actor: Actor, action: str, reason, legal_reference: str, details: dict | None = None):
    """Commit the custody record of an access; the access may happen only after this."""
    if actor.kind == "staff" and not str(reason).strip():
        raise EvidenceError("reason_required", _("say why you access this evidence"), 422, "reason")
    with transaction.atomic():
        case = for_update(Case.objects).get(pk=case.pk)
        entry = ledger.append(ledger.Head(case.custody_index, case.custody_head), ledger.custody_body(
            case=case.reference, at=_now_text(timezone.now()), actor=actor.as_json(), action=action,
            reason=str(reason), legal_reference=legal_reference, details=details), keyring.sync().signer)
        row = CustodyRecord.objects.create(
            case=case, index=entry.body["index"], action=action, actor=actor.user, actor_label=actor.label,
            reason=str(reason), legal_reference=legal_reference, data=entry.data, sha256=entry.sha256,
            signature=entry.signature)
        Case.objects.filter(pk=case.pk).update(custody_index=row.index, custody_head=row.sha256)
    return row


def _stream(case: Case) -> bytes:
    case_key = _case_key(case)
    last = Record.objects.filter(case=case, conflict=False).exclude(kind="open").order_by("-seq").first()
    if last is None:
        return b""
    known = _known(case, None, case_key)
    return b"".join(audio for _h, audio in intake.chain_audio(known, last.header_sha256, _seal(case)))


def listen(user, reference: str, reason: str, legal_reference: str) -> bytes:
    """The original Ogg Opus stream, after the custody record."""
    case = case_for(user, reference)
    _case_key(case)
    _custody(case, staff(user), "listen", reason, legal_reference)
    return _stream(case)


def export(user, reference: str, reason: str, legal_reference: str, out: Path) -> Path:
    """Write the signed export package of a case to ``out`` (a .zip). The package is
    built aside first; its custody record, holding the package's SHA-256, is committed
    once it exists, and only then is it put at ``out``. A failed export is recorded as
    ``export_failed``: nothing else leaves the server."""
    case = case_for(user, reference)
    _case_key(case)
    if not str(reason).strip():
        raise EvidenceError("reason_required", _("say why you access this evidence"), 422, "reason")
    out = Path(out)
    building = out.with_name(f".{out.name}.{secrets.token_hex(4)}.building")
    try:
        _build_package(case, building)
    except (tsa.TimestampError, EvidenceError, crypto.CryptoError, keyring.KeyringError, OSError) as exc:
        building.unlink(missing_ok=True)
        error = "timestamp" if isinstance(exc, tsa.TimestampError) else type(exc).__name__
        _custody(case, staff(user), "export_failed", reason, legal_reference, {"error": error})
        if isinstance(exc, tsa.TimestampError):
            raise EvidenceError("timestamp", _("the timestamp authority failed: %(error)s") % {"error": exc},
                                502) from None
        if isinstance(exc, EvidenceError):
            raise
        if isinstance(exc, OSError):
            raise
        raise EvidenceError("keys", _("the package cannot be made: %(error)s") % {"error": exc}, 409) from None
    digest = verifier.sha256_file(building)
    try:
        _custody(case, staff(user), "export", reason, legal_reference,
                 {"package_sha256": digest, "package_bytes": building.stat().st_size})
        os.replace(building, out)
    finally:
        building.unlink(missing_ok=True)
    return out


def _build_package(case: Case, out: Path) -> Path:
    case.refresh_from_db()
    k = keyring.sync()
    authority = conf.tsa()
    case_key = _case_key(case)
    seal = _seal(case)
    records = [bag.StoredRecord(r.seq, r.kind, bytes(r.header), bytes(r.signature), r.header_sha256,
                                None if r.blob is None else _ciphertext(case, case_key, r), r.conflict)
               for r in Record.objects.filter(case=case).order_by("seq", "received_at")]
    log_rows = list(case.log.order_by("index"))
    custody_rows = list(case.custody.order_by("index"))
    signers = {json.loads(bytes(row.data))["signer"] for row in log_rows + custody_rows}
    keys = {"device.pem": case.device_key.public_key_pem, "server-seal.pem": seal.public_pem,
            "export.pem": k.exporter.public_pem}
    for fp in sorted(signers):
        keys[f"signing/{fp}.pem"] = keyring.public_pem(fp)
    if authority and authority.ca_file:
        keys["tsa-ca.pem"] = Path(authority.ca_file).read_text()
        if authority.cert_file:
            keys["tsa.pem"] = Path(authority.cert_file).read_text()
    inp = bag.ExportInput(
        case={"reference": case.reference, "session": str(case.session), "association": case.association.name,
              "device": case.device.hardware_id, "alert": str(case.alert.client_id) if case.alert else None,
              "state": case.get_state_display(), "recording": case.get_recording_display()},
        records=records,
        stream=_stream(case),
        log=[bag.Signed(bytes(e.data), bytes(e.signature)) for e in log_rows],
        custody=[bag.Signed(bytes(c.data), bytes(c.signature)) for c in custody_rows],
        keys=keys,
        timestamps=[(f"log-{t.log_index:06d}", bytes(t.token), f"data/log/{t.log_index:06d}.json")
                    for t in case.timestamps.order_by("log_index")],
        key_log=keyring.document(),
        key_log_url=keyring.url(),
    )
    stamp = None
    if authority:
        def stamp(data: bytes) -> bytes:
            return tsa.request(data, authority.url, authority.ca_file, authority.cert_file)
    return bag.build(inp, k.exporter, out, stamp)


def _transition(case: Case, allowed: set[str], to, actor: Actor, action: str, reason, legal_reference: str,
                details: dict | None = None, **fields) -> Case:
    """Change the state of CASE, with its custody record, in one transaction: a change
    that is refused (the case is not in an ALLOWED state) records nothing, and one that
    is recorded happens. TO and the FIELDS' values may be functions of the case as it
    was, locked."""
    with transaction.atomic():
        case = for_update(Case.objects).get(pk=case.pk)
        if case.state not in allowed:
            raise EvidenceError("state", _("not possible in state %(state)s") % {"state": case.get_state_display()})
        _custody(case, actor, action, reason, legal_reference, details)
        values = {name: value(case) if callable(value) else value for name, value in {**fields, "state": to}.items()}
        for name, value in values.items():
            setattr(case, name, value)
        case.save(update_fields=["state", *fields])  # (not the custody head, just written)
    case.refresh_from_db()
    return case


LIVE = {Case.State.ACTIVE, Case.State.SEALED, Case.State.RETAINED}


def place_legal_hold(user, reference: str, reason: str, legal_reference: str) -> Case:
    case = case_for(user, reference)
    if not legal_reference.strip():
        raise EvidenceError("legal_reference_required", _("a legal hold needs a legal reference"), 422, "legal_reference")
    return _transition(case, LIVE | {Case.State.DELETION_PENDING}, Case.State.LEGAL_HOLD, staff(user), "legal_hold",
                       reason, legal_reference, deletion_due_at=None)


def release_legal_hold(user, reference: str, reason: str, legal_reference: str) -> Case:
    return _transition(case_for(user, reference), {Case.State.LEGAL_HOLD}, Case.State.RETAINED, staff(user),
                       "release_hold", reason, legal_reference)


def retain(user, reference: str, reason: str, legal_reference: str) -> Case:
    return _transition(case_for(user, reference), {Case.State.SEALED}, Case.State.RETAINED, staff(user), "retain",
                       reason, legal_reference)


def _schedule_deletion(case: Case, actor: Actor, reason, legal_reference: str, by_device: bool) -> Case:
    due = timezone.now() + timedelta(seconds=conf.deletion_delay_seconds(by_device))
    return _transition(case, LIVE, Case.State.DELETION_PENDING, actor, "deletion_request", reason, legal_reference,
                       {"due_at": _now_text(due)}, deletion_due_at=due,
                       state_before_deletion=lambda locked: locked.state)


def request_deletion(user, reference: str, reason: str, legal_reference: str) -> Case:
    return _schedule_deletion(case_for(user, reference), staff(user), reason, legal_reference, by_device=False)


def request_deletion_by_device(device, session: uuid.UUID) -> Case:
    """A deletion asked from the device is never immediate (it may be coerced): it is
    scheduled after the device delay, during which staff can cancel it."""
    case = Case.objects.filter(session=session, device=device).first()
    if case is None:
        raise EvidenceError("not_found", _("no such session for this device"), 404, "session")
    if case.state == Case.State.DELETION_PENDING:
        return case
    return _schedule_deletion(case, Actor("device", device.hardware_id), _("requested from the device"), "", True)


def cancel_deletion(user, reference: str, reason: str, legal_reference: str) -> Case:
    return _transition(case_for(user, reference), {Case.State.DELETION_PENDING},
                       lambda case: case.state_before_deletion or Case.State.SEALED, staff(user), "cancel_deletion",
                       reason, legal_reference, deletion_due_at=None)


# Custody-logged changes of a case's state, by the name the CLI and the back-office use.
STATE_CHANGES = {"hold": place_legal_hold, "release": release_legal_hold, "retain": retain,
                 "delete": request_deletion, "cancel-deletion": cancel_deletion}
