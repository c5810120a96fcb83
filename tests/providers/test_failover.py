"""Failover without blind double sends: after a timeout that may have left the message
at Twilio (the stand-in stores it, then answers too late), the dispatcher asks Twilio
before trying the next provider."""

from __future__ import annotations

import uuid

import pytest

from balise.dispatch.dispatcher import Job, send_with_failover
from balise.providers.base import AmbiguousError, OutgoingMessage, Provider
from balise.providers.twilio import TwilioProvider
from tests.providers.conftest import FROM
from tests.providers.twilio_standin import ACCOUNT_SID, AUTH_TOKEN
from tests.spine.helpers import RecordingProvider


def job(text: str = "BALISE ALERTE: Camille ...", channel: str = "sms") -> Job:
    key = uuid.uuid4()
    message = OutgoingMessage(key=str(key), channel=channel, to="+33612345601", text=text, language="fr",
                              alert_id=1, alert_kind="emergency", purpose="alert")
    return Job(key, 1, 1, message)


@pytest.fixture
def providers(twilio_settings, standin):
    # A short timeout: the stand-in holds its answer until the test ends.
    twilio = TwilioProvider(ACCOUNT_SID, AUTH_TOKEN, FROM, api_url=standin.url, timeout=0.5)
    backup = RecordingProvider("backup")
    yield twilio, backup
    twilio.close()


def test_a_message_twilio_took_before_timing_out_is_not_sent_again_elsewhere(providers, standin):
    twilio, backup = providers
    standin.hold_creates = 1
    outcome = send_with_failover([twilio, backup], job())
    (taken,) = standin.messages
    assert outcome.ok and outcome.provider == "twilio" and outcome.provider_ref == taken["sid"]
    assert backup.sent == []


def test_a_message_twilio_did_not_take_goes_to_the_next_provider(providers, standin):
    twilio, backup = providers
    standin.lose_creates = 1
    sent = job()
    outcome = send_with_failover([twilio, backup], sent)
    assert outcome.ok and outcome.provider == "backup"
    assert standin.messages == [] and [m.key for m in backup.sent] == [sent.message.key]
    # (the lookup asked Twilio for the messages to that number before failing over)
    assert ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json") in standin.requests


def test_an_earlier_message_with_other_words_is_not_mistaken_for_this_one(providers, standin):
    twilio, backup = providers
    assert send_with_failover([twilio], job(text="Balise: an earlier message")).ok
    standin.lose_creates = 1
    outcome = send_with_failover([twilio, backup], job())
    assert outcome.provider == "backup" and len(standin.messages) == 1


class Mute(Provider):
    """Times out on every message and cannot be asked about one (like a plain webhook)."""

    name = "mute"

    def send(self, message):
        raise AmbiguousError("timed out after sending")


def test_a_provider_that_cannot_be_asked_is_failed_over_all_the_same(providers):
    twilio, backup = providers
    outcome = send_with_failover([Mute(), backup], job())
    assert outcome.ok and outcome.provider == "backup"
