"""The back-office page through which staff export, listen to, hold or delete a case:
every access is custody-logged first, needs a reason, and is for the association's
administrators and referents only."""

from __future__ import annotations

import hashlib
import json

import io
import zipfile

import pytest
from django.test import Client
from django.urls import reverse

from balise.associations.models import Membership
from balise.evidence.models import Case, CustodyRecord
from balise_evidence import verifier
from tests.personas import authenticator, staff_client, totp_code

from .conftest import platform_anchors, upload_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(enrolled, client, sealed):
    upload_all(client, enrolled, sealed)
    return Case.objects.get(session=sealed[0].session)


def access_url(case) -> str:
    return reverse("admin:evidence_case_access", args=[case.pk])


def test_a_referent_exports_a_package_that_verifies(enrolled, case, tmp_path):
    staff = staff_client(enrolled.staff)
    page = staff.get(reverse("admin:evidence_case_change", args=[case.pk]))
    assert page.status_code == 200 and access_url(case).encode() in page.content
    r = staff.post(access_url(case), {"action": "export", "reason": "réquisition du parquet",
                                      "legal_reference": "PV 2026/42"})
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    assert f"balise-preuve-{case.reference}.zip" in r["Content-Disposition"]
    package = tmp_path / "package.zip"
    package.write_bytes(b"".join(r.streaming_content))
    assert zipfile.is_zipfile(io.BytesIO(package.read_bytes()))
    report = verifier.verify_path(package, platform_anchors())
    assert report.status == verifier.COMPLETE, verifier.render(report)
    [record] = CustodyRecord.objects.filter(case=case)
    assert (record.action, record.actor, record.reason, record.legal_reference) == (
        "export", enrolled.staff, "réquisition du parquet", "PV 2026/42")
    # committed once the package existed, with the SHA-256 of exactly what was downloaded
    assert json.loads(bytes(record.data))["details"]["package_sha256"] == hashlib.sha256(package.read_bytes()).hexdigest()


def test_listen_and_legal_hold(enrolled, case, sealed):
    staff = staff_client(enrolled.staff)
    r = staff.post(access_url(case), {"action": "listen", "reason": "dépôt de plainte"})
    assert r["Content-Type"] == "audio/ogg" and r.content.startswith(b"OggS")
    assert len(r.content) == sealed[-1].header["stream_len"]
    r = staff.post(access_url(case), {"action": "hold", "reason": "enquête", "legal_reference": "Parquet 26/123"})
    assert r.status_code == 302
    case.refresh_from_db()
    assert case.state == Case.State.LEGAL_HOLD
    assert [c.action for c in CustodyRecord.objects.filter(case=case).order_by("index")] == ["listen", "legal_hold"]


@pytest.mark.parametrize(("data", "message"), [
    ({"action": "export", "reason": "   "}, "This field is required."),
    ({"action": "hold", "reason": "enquête"}, "legal reference"),
    ({"action": "format", "reason": "x"}, "Select a valid choice"),
])
def test_bad_requests_are_form_errors_and_access_nothing(enrolled, case, settings, data, message):
    settings.LANGUAGE_CODE = "en"
    r = staff_client(enrolled.staff).post(access_url(case), data, HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 200 and message in r.content.decode()
    assert CustodyRecord.objects.count() == 0


@pytest.mark.parametrize("role", [Membership.Role.WORKER, Membership.Role.VIEWER])
def test_evidence_is_for_administrators_and_referents(enrolled, case, role):
    Membership.objects.filter(user=enrolled.staff).update(role=role)
    staff = staff_client(enrolled.staff)
    assert staff.get(reverse("admin:evidence_case_change", args=[case.pk])).status_code == 200  # the case is listed
    r = staff.post(access_url(case), {"action": "listen", "reason": "curiosité"})
    assert r.status_code == 200 and "administrat" in r.content.decode()
    assert CustodyRecord.objects.count() == 0


def test_another_associations_case_is_not_found(other_world, case):
    Membership.objects.filter(user=other_world.staff).update(role=Membership.Role.ADMIN)
    r = staff_client(other_world.staff).post(access_url(case), {"action": "listen", "reason": "x"})
    assert r.status_code == 404
    assert CustodyRecord.objects.count() == 0


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_referent_holds_and_exports_a_case_in_the_browser(live_server, chromium, enrolled, sealed, tmp_path):
    client = Client(HTTP_HOST="127.0.0.1")
    upload_all(client, enrolled, sealed)
    case = Case.objects.get(session=sealed[0].session)
    device = authenticator(enrolled.staff)  # a referent's second factor
    page = chromium.new_page(locale="fr-FR", viewport={"width": 1024, "height": 800})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/evidence/case/")
    page.fill("#id_username", enrolled.staff.get_username())
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")
    page.fill("#id_token", totp_code(device.bin_key))
    page.click("input[type=submit]")
    page.click(f"text={case.reference}")
    page.click("text=Exporter, écouter, conservation judiciaire, suppression…")
    assert "Chaque accès est inscrit" in page.content()

    page.select_option("#id_action", "hold")
    page.fill("#id_reason", "enquête en cours")
    page.click("input[type=submit]")  # no legal reference: the form says so, nothing is written
    assert "référence légale" in page.text_content(".errorlist")
    assert CustodyRecord.objects.count() == 0
    page.fill("#id_legal_reference", "Parquet 26/123")
    page.click("input[type=submit]")
    assert "journal de traçabilité" in page.text_content(".messagelist")

    page.click("text=Exporter, écouter, conservation judiciaire, suppression…")
    page.select_option("#id_action", "export")
    page.fill("#id_reason", "réquisition")
    with page.expect_download() as download:
        page.click("input[type=submit]")
    package = tmp_path / download.value.suggested_filename
    download.value.save_as(package)
    report = verifier.verify_path(package, platform_anchors())
    assert report.status == verifier.COMPLETE, verifier.render(report)
    assert report.facts["custody_actions"] == ["legal_hold"]  # the export's own record holds its hash, after it
