"""The script of one alert call: her recorded message (or a synthesised introduction),
then the location read out, then "press 1". Providers build their call from it: Twilio
from the TwiML at /inbound/voice/<token>/twiml, a SIP or modem gateway from the audio at
/inbound/voice/<token>/speech.wav, the console provider by printing it."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import translation

from balise.alerts.models import LocationFix
from balise.dispatch.messages import voice_parts
from balise.tracking.tokens import make_call_token
from balise.voice.models import VoiceMessage


@dataclass(frozen=True)
class CallScript:
    language: str
    intro: str  # spoken when there is no recording
    recording: bool  # her own message replaces the intro
    location: str
    prompt: str
    callback_url: str  # where the provider reports status and keypad presses
    audio_url: str  # her recording, when there is one

    @property
    def text(self) -> str:
        return " ".join((self.intro, self.location, self.prompt))


def call_url(delivery_id, site_url: str = "") -> str:
    """Where a provider reports this call's status and keypad presses: a signed POST
    (README, "Inbound callbacks"); also the base of the call's script URLs."""
    return f"{site_url or settings.SITE_URL}/inbound/voice/{make_call_token(delivery_id)}"


def call_script(delivery) -> CallScript:
    alert = delivery.alert
    fix = LocationFix.objects.filter(alert=alert).order_by("-recorded_at", "-id").first()
    with translation.override(delivery.language):
        # (a provider fetching the script can wait for the place name; a message cannot)
        intro, location, prompt = voice_parts(alert, fix, wait=3.0)
    # Under duress the synthesised warning ("do not call her") is what must be heard.
    recording = not alert.duress and VoiceMessage.objects.filter(person_id=alert.person_id).exists()
    base = call_url(delivery.pk)
    return CallScript(
        language=delivery.language, intro=intro, recording=recording, location=location, prompt=prompt,
        callback_url=base, audio_url=f"{base}/recording" if recording else "",
    )
