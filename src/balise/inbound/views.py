"""Webhooks that SMS and voice providers call. Thin: parse, authenticate, call
balise.inbound.actions, answer in the provider's format (TwiML for Twilio-style form
posts, JSON otherwise). Nothing here logs a phone number or a token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from xml.sax.saxutils import escape, quoteattr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpResponse, JsonResponse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from balise.dispatch.models import Delivery
from balise.inbound import actions
from balise.tracking.tokens import read_call_token
from balise.voice.actions import synthesize
from balise.voice.calls import call_script
from balise.voice.models import VoiceMessage

TWILIO_LANGUAGES = {"fr": "fr-FR", "en": "en-GB"}


def _quiet(response):
    response._has_been_logged = True  # the path holds a token; 4xx are logged with it
    response["Cache-Control"] = "no-store"
    return response


def _twiml(body: str = "") -> HttpResponse:
    return _quiet(HttpResponse(f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
                               content_type="text/xml; charset=utf-8"))


def _params(request) -> tuple[dict, bool]:
    """(parameters, is_json): a JSON object, or a form post."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}, True
        return (data if isinstance(data, dict) else {}), True
    return request.POST.dict(), False


def _signed(request) -> bool:
    """True when the request carries a valid signature: Balise's own HMAC-SHA256 of the
    body (X-Balise-Signature), or Twilio's (X-Twilio-Signature)."""
    secret = settings.INBOUND_SECRET
    if secret:
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(request.headers.get("X-Balise-Signature", ""), expected):
            return True
    token = settings.TWILIO_AUTH_TOKEN
    if token and request.content_type != "application/json":
        payload = settings.SITE_URL + request.get_full_path()
        payload += "".join(k + v for k in sorted(request.POST) for v in request.POST.getlist(k))
        expected = base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()
        if hmac.compare_digest(request.headers.get("X-Twilio-Signature", ""), expected):
            return True
    return False


@csrf_exempt
@require_POST
def sms(request):
    """An SMS received by the provider. Form (From, Body) or JSON {"from", "text"}."""
    if not (settings.INBOUND_SECRET or settings.TWILIO_AUTH_TOKEN):
        return _quiet(JsonResponse({"error": "disabled", "message": "set BALISE_INBOUND_SECRET"}, status=403))
    if not _signed(request):
        return _quiet(JsonResponse({"error": "bad_signature"}, status=403))
    params, is_json = _params(request)
    sender = str(params.get("from") or params.get("From") or "")
    text = str(params.get("text") or params.get("Body") or "")
    if not sender:
        return _quiet(JsonResponse({"error": "invalid", "message": "the sender is missing"}, status=400))
    result, delivery = actions.sms_reply(sender, text)
    if is_json:
        return _quiet(JsonResponse({"result": result}))
    if result == "acknowledged":
        with translation.override(delivery.language):
            thanks = _("Balise: thank you. The others are told that you are on it.")
            return _twiml(f"<Message>{escape(thanks)}</Message>")
    return _twiml()


def _delivery(token: str):
    key = read_call_token(token)
    if key is None:
        return None
    try:
        return Delivery.objects.select_related("alert__person", "contact").filter(pk=key, channel="voice").first()
    except (ValueError, ValidationError):
        return None


@csrf_exempt
@require_POST
def voice(request, token: str):
    """Status and keypad of one call: Digits and/or CallStatus (form) or JSON
    {"digits", "status"}. The signed token in the URL identifies the call."""
    delivery = _delivery(token)
    if delivery is None:
        return _quiet(JsonResponse({"error": "not_found"}, status=404))
    params, is_json = _params(request)
    digits = str(params.get("digits") or params.get("Digits") or "")
    status = str(params.get("status") or params.get("CallStatus") or "")
    result = actions.call_event(delivery.pk, digits=digits, status=status)
    if is_json:
        return _quiet(JsonResponse({"result": result}))
    if result == "acknowledged":
        with translation.override(delivery.language):
            say = escape(_("Thank you. The others are told that you are on it. Call 17 or 112."))
        return _twiml(f"<Say language={quoteattr(TWILIO_LANGUAGES.get(delivery.language, 'fr-FR'))}>{say}</Say><Hangup/>")
    return _twiml()


@csrf_exempt
@require_http_methods(["GET", "POST"])
def voice_twiml(request, token: str):
    """The call itself, as TwiML: her message (or the synthesised one), the location,
    and "press 1", twice; key presses are posted back to the call's callback URL."""
    delivery = _delivery(token)
    if delivery is None:
        return _quiet(HttpResponse(status=404))
    script = call_script(delivery)
    lang = quoteattr(TWILIO_LANGUAGES.get(script.language, "fr-FR"))
    intro = f"<Play>{escape(script.audio_url)}</Play>" if script.recording else f"<Say language={lang}>{escape(script.intro)}</Say>"
    said = f"<Say language={lang}>{escape(script.location)} {escape(script.prompt)}</Say>"
    gather = f'<Gather numDigits="1" timeout="8" action={quoteattr(script.callback_url)}>{intro}{said}</Gather>'
    return _twiml(gather + gather)


@require_http_methods(["GET"])
def voice_recording(request, token: str):
    """Her recorded message, for the provider to play during this call."""
    delivery = _delivery(token)
    message = VoiceMessage.objects.filter(person_id=delivery.alert.person_id).first() if delivery else None
    if message is None:
        return _quiet(HttpResponse(status=404))
    return _quiet(HttpResponse(bytes(message.audio), content_type=message.content_type))


@require_http_methods(["GET"])
def voice_speech(request, token: str):
    """The whole call synthesised (espeak-ng), for gateways that can only play audio."""
    delivery = _delivery(token)
    if delivery is None:
        return _quiet(HttpResponse(status=404))
    audio = synthesize(call_script(delivery).text, delivery.language)
    if audio is None:
        return _quiet(HttpResponse("text-to-speech is not installed (espeak-ng)", status=503, content_type="text/plain"))
    return _quiet(HttpResponse(audio, content_type="audio/wav"))
