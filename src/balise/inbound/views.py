"""Webhooks that SMS and voice providers call. Thin: parse, authenticate, call
balise.inbound.actions, answer in the provider's format (TwiML for Twilio-style form
posts, JSON otherwise). Nothing here logs a phone number or a token."""

from __future__ import annotations

import json
import logging
from functools import wraps
from xml.sax.saxutils import escape, quoteattr

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from balise.dispatch.models import Delivery
from balise.inbound import actions, signatures
from balise.tracking.tokens import read_call_token
from balise.voice.actions import synthesize
from balise.voice.calls import call_script
from balise.voice.models import VoiceMessage

TWILIO_LANGUAGES = {"fr": "fr-FR", "en": "en-GB"}
log = logging.getLogger(__name__)


def _quiet(response):
    response._has_been_logged = True  # the path holds a token; 4xx are logged with it
    response["Cache-Control"] = "no-store"
    return response


def _twiml(body: str = "") -> HttpResponse:
    return _quiet(HttpResponse(f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
                               content_type="text/xml; charset=utf-8"))


def _params(request) -> tuple[dict[str, str], bool]:
    """(parameters, is_json): a JSON object, or a form post. Values are text without
    control characters (a NUL byte cannot be stored); anything else counts as missing."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):
            return {}, True
        is_json = True
    else:
        data, is_json = request.POST.dict(), False
    if not isinstance(data, dict):
        return {}, is_json
    return {str(k): actions.printable(v) for k, v in data.items() if isinstance(v, (str, int))}, is_json


def signed_callback(view):
    """Refuse (403, nothing done) a callback whose signature is missing, wrong, stale or
    already used; run the view in the transaction that records its signature as used."""

    @wraps(view)
    def checked(request, *args, **kwargs):
        signature = signatures.verified_signature(request)
        if not signature:
            log.warning("inbound: refused a callback without a valid signature")
            return _quiet(JsonResponse({"error": "bad_signature"}, status=403))
        with transaction.atomic():
            if not signatures.claim(signature):
                log.warning("inbound: refused a callback already received (replay)")
                return _quiet(JsonResponse({"error": "replayed"}, status=403))
            return view(request, *args, **kwargs)

    return checked


@csrf_exempt
@require_POST
@signed_callback
def sms(request):
    """An SMS received by the provider. Form (From, Body) or JSON {"from", "text"}."""
    params, is_json = _params(request)
    sender = params.get("from") or params.get("From") or ""
    text = params.get("text") or params.get("Body") or ""
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
@signed_callback
def voice(request, token: str):
    """Status and keypad of one call: Digits and/or CallStatus (form) or JSON
    {"digits", "status"}. The token in the URL identifies the call; the request's
    signature covers that URL."""
    delivery = _delivery(token)
    if delivery is None:
        return _quiet(JsonResponse({"error": "not_found"}, status=404))
    params, is_json = _params(request)
    digits = params.get("digits") or params.get("Digits") or ""
    status = params.get("status") or params.get("CallStatus") or ""
    result = actions.call_event(delivery.pk, digits=digits, status=status,
                                answered_by=params.get("answered_by") or params.get("AnsweredBy") or "",
                                error=params.get("error") or params.get("ErrorCode") or "")
    if is_json:
        return _quiet(JsonResponse({"result": result}))
    if result in ("acknowledged", "cannot_help"):
        with translation.override(delivery.language):
            if result == "cannot_help":
                say = escape(_("Thank you. Balise goes on calling the others."))
            else:
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
    params, _is_json = _params(request) if request.method == "POST" else (request.GET.dict(), False)
    if (params.get("AnsweredBy") or "").lower().startswith(actions.MACHINE):
        # A voicemail is no one reached: hang up, its status callback says "voicemail"
        # and the plan goes on (nothing is changed here: this request is not signed).
        return _twiml("<Hangup/>")
    script = call_script(delivery)
    lang = quoteattr(TWILIO_LANGUAGES.get(script.language, "fr-FR"))
    intro = f"<Play>{escape(script.audio_url)}</Play>" if script.recording else f"<Say language={lang}>{escape(script.intro)}</Say>"
    said = f"<Say language={lang}>{escape(script.location)} {escape(script.prompt)}</Say>"
    gather = f'<Gather numDigits="1" timeout="8" action={quoteattr(script.callback_url)}>{intro}{said}</Gather>'
    return _twiml(gather + gather)


@csrf_exempt
@require_POST
@signed_callback
def delivery_status(request, token: str):
    """A provider's delivery report on one SMS: MessageStatus and ErrorCode (Twilio's
    form) or JSON {"status", "error"}."""
    key = read_call_token(token)
    if key is None:
        return _quiet(JsonResponse({"error": "not_found"}, status=404))
    params, is_json = _params(request)
    status = params.get("status") or params.get("MessageStatus") or params.get("SmsStatus") or ""
    try:
        result = actions.carrier_status(key, status=status, error=params.get("error") or params.get("ErrorCode") or "")
    except (ValueError, ValidationError):
        result = "unknown_delivery"
    if result == "unknown_delivery":
        return _quiet(JsonResponse({"error": "not_found"}, status=404))
    return _quiet(JsonResponse({"result": result})) if is_json else _twiml()


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
