"""Custody tells the truth: an evidence action that is refused (the case is not in a
state that allows it, no reason given, not her association's case, not her role) leaves
no custody record saying it happened; one that is recorded happened."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from balise.evidence import actions
from balise.evidence.models import Case, CustodyRecord
from tests.personas import make_case, staff_client

from .conftest import upload_all

pytestmark = pytest.mark.django_db

S = Case.State


@pytest.mark.parametrize(("state", "action"), [
    (S.SEALED, "release"),            # not on hold
    (S.ACTIVE, "retain"),             # still recording
    (S.SEALED, "cancel-deletion"),    # no deletion pending
    (S.DESTROYED, "hold"),
    (S.DESTROYED, "delete"),
    (S.LEGAL_HOLD, "delete"),         # a hold blocks deletion
    (S.LEGAL_HOLD, "retain"),
])
def test_a_state_change_refused_leaves_no_custody_record(world, state, action):
    case = make_case(world, state)
    with pytest.raises(actions.EvidenceError) as refused:
        actions.STATE_CHANGES[action](world.staff, case.reference, "enquête", "PV 2026/1")
    assert refused.value.code == "state"
    assert not CustodyRecord.objects.filter(case=case).exists()
    case.refresh_from_db()
    assert (case.state, case.custody_index) == (state, -1)


def test_the_access_page_says_so_and_writes_nothing(world):
    case = make_case(world, S.SEALED)
    r = staff_client(world.staff).post(reverse("admin:evidence_case_access", args=[case.pk]),
                                       {"action": "release", "reason": "fin de l'enquête", "legal_reference": "PV 1"},
                                       HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 200 and r.context["form"].errors
    assert not CustodyRecord.objects.filter(case=case).exists()


def test_what_is_recorded_happened_and_the_chain_goes_on_after_a_refusal(world):
    case = make_case(world, S.SEALED)
    with pytest.raises(actions.EvidenceError):
        actions.release_legal_hold(world.staff, case.reference, "trop tôt", "")
    actions.place_legal_hold(world.staff, case.reference, "enquête", "Parquet 26/123")
    with pytest.raises(actions.EvidenceError):
        actions.request_deletion(world.staff, case.reference, "plus utile", "")
    actions.release_legal_hold(world.staff, case.reference, "classement", "Parquet 26/123")
    actions.request_deletion(world.staff, case.reference, "classée sans suite", "")
    actions.cancel_deletion(world.staff, case.reference, "erreur", "")
    records = list(CustodyRecord.objects.filter(case=case).order_by("index"))
    assert [(r.index, r.action) for r in records] == [
        (0, "legal_hold"), (1, "release_hold"), (2, "deletion_request"), (3, "cancel_deletion")]
    case.refresh_from_db()
    assert case.state == S.RETAINED and case.deletion_due_at is None
    assert (case.custody_index, case.custody_head) == (3, records[-1].sha256)


def test_a_scheduled_destruction_is_recorded_once_it_happens(world):
    due, cancelled = make_case(world, S.SEALED), make_case(world, S.SEALED)
    for case in (due, cancelled):
        actions.request_deletion(world.staff, case.reference, "classée", "")
    actions.cancel_deletion(world.staff, cancelled.reference, "erreur", "")
    done = actions.destroy_due(timezone.now() + timedelta(days=30))
    assert [c.pk for c in done] == [due.pk]
    due.refresh_from_db()
    assert due.state == S.DESTROYED and due.custody_index == 1
    assert list(CustodyRecord.objects.filter(case=due).values_list("action", flat=True).order_by("index")) == [
        "deletion_request", "destroy"]
    assert list(CustodyRecord.objects.filter(case=cancelled).values_list("action", flat=True).order_by("index")) == [
        "deletion_request", "cancel_deletion"]


def test_an_export_that_fails_after_its_record_is_recorded_as_failed(monkeypatch, enrolled, client, sealed, tmp_path):
    """The export record is committed only once the package exists (with its hash):
    when it cannot be made, the log records a failure, not an export."""
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    monkeypatch.setenv("BALISE_EVIDENCE_TSA_URL", "http://127.0.0.1:9/down")
    with pytest.raises(actions.EvidenceError):
        actions.export(enrolled.staff, case.reference, "tribunal", "", tmp_path / "no.zip")
    assert not (tmp_path / "no.zip").exists()
    records = list(CustodyRecord.objects.filter(case=case).order_by("index"))
    assert [r.action for r in records] == ["export_failed"]
    assert json.loads(bytes(records[0].data))["details"] == {"error": "timestamp"}
    assert not list(tmp_path.iterdir())  # nothing half-built left behind
