"""axe-core on the contact pages that test_screens does not reach, on a phone in the
light and the dark scheme: the consent page once accepted and once declined, the
association's own link to the live page, a closed alert's page, an expired link, the
busy page (503) and the "too many attempts" page (429). Any serious or critical violation fails; `pytest -s` prints the
counts per page and scheme."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from balise.alerts.actions import resolve_alert
from balise.alerts.models import Alert
from balise.people.models import Contact
from balise.tracking import views
from balise.tracking.tokens import make_consent_token
from tests.contacts.axe import PHONE, axe_violations
from tests.contacts.helpers import page_link
from tests.contacts.helpers import raise_alert as raise_in_process
from tests.contacts.test_browser import _link_for, server  # noqa: F401 (fixture)
from tests.contacts.test_busy_database import _locked
from tests.contacts.test_screens import raise_alert

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_consent_answers_are_accessible(server, chromium, world):  # noqa: F811
    from playwright.sync_api import expect

    base, _outbox = server
    accepting, declining = world.contacts[0], world.contacts[1]
    Contact.objects.filter(pk__in=[accepting.pk, declining.pk]).update(consent=Contact.Consent.PENDING)
    context = chromium.new_context(**PHONE)
    page = context.new_page()
    page.goto(f"{base}/c/{make_consent_token(accepting)}")
    page.get_by_role("button", name="J'accepte").tap()
    expect(page.locator("h1").first).to_have_text("Merci.")
    assert axe_violations(page, "consent accepted") == []

    page.goto(f"{base}/c/{make_consent_token(declining)}")
    page.get_by_role("button", name="Je refuse").tap()
    expect(page.locator("h1").first).to_have_text("Votre réponse est enregistrée.")
    assert axe_violations(page, "consent declined") == []
    context.close()


def test_the_association_link_a_closed_alert_and_an_expired_link_are_accessible(server, chromium, world):  # noqa: F811
    from playwright.sync_api import expect

    base, outbox = server
    # An alarm reaches the association's on-call line at once, with its own link.
    _api, client_id = raise_alert(base, world.token, kind="alarm")
    association_link = _link_for(outbox, world.association.on_call_number)
    contact_link = _link_for(outbox, world.contacts[0].phone)
    context = chromium.new_context(**PHONE)
    page = context.new_page()
    page.goto(association_link)
    expect(page.locator("#headline")).to_have_text("Camille est en grave danger : elle a déclenché son alarme")
    assert page.locator("footer").count() == 0  # no contact's consent link on the association's page
    assert axe_violations(page, "association's link, alarm") == []

    page.goto(contact_link)
    resolve_alert(Alert.objects.get(client_id=client_id), staff=world.staff)
    expect(page.locator("#headline")).to_have_text("L'alerte de Camille est close", timeout=10_000)
    assert axe_violations(page, "alert closed by the association") == []

    # A day after the close the link shows nothing of her.
    Alert.objects.filter(client_id=client_id).update(
        closed_at=timezone.now() - timedelta(seconds=settings.TRACKING_LINK_TTL_AFTER_CLOSE + 60))
    response = page.goto(contact_link)
    assert response.status == 404 and "Camille" not in page.content()
    expect(page.locator("h1")).to_have_text("Ce lien n'est pas valide ou a expiré.")
    assert axe_violations(page, "expired link") == []
    context.close()


@pytest.mark.parametrize("refusal", ["busy", "too_many_attempts"])
def test_the_busy_and_too_many_attempts_pages_are_accessible(live_server, chromium, world, monkeypatch, settings,
                                                             refusal):
    """What a contact gets instead of her page while the database is locked (balise.busy),
    or from a source that opened too many wrong links (balise.tracking.shortlinks)."""
    alert = raise_in_process(world, "emergency")
    if refusal == "busy":
        monkeypatch.setattr(views, "page_state", _locked)
    else:
        settings.TRACKING_LINK_MAX_FAILURES = 0
    status, words = {"busy": (503, "réessayez dans quelques secondes"),
                     "too_many_attempts": (429, "réessayez dans quelques minutes")}[refusal]
    context = chromium.new_context(**PHONE)
    page = context.new_page()
    response = page.goto(f"{live_server.url}{page_link(alert, world.contacts[0])}")
    assert response.status == status and "Camille" not in page.content()
    assert words in page.inner_text("h1")
    assert axe_violations(page, f"{refusal} ({status})") == []
    context.close()
