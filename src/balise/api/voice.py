"""Device API: the person's own voice message, played at the start of her alert calls.
The audio is the raw request body (Ogg/Opus, WAV, MP3, MP4/AAC or WebM), at most
BALISE_VOICE_MESSAGE_MAX_BYTES. The device can replace or delete it, and read its
metadata, but never download it back."""

from __future__ import annotations

from datetime import datetime

from ninja import Router, Schema, Status

from balise.api.errors import error_response
from balise.api.schemas import ErrorOut
from balise.voice.actions import VoiceError, delete_voice_message, store_voice_message
from balise.voice.models import VoiceMessage

router = Router(tags=["voice"])
ERRORS = {code: ErrorOut for code in (401, 404, 409, 413, 415, 422, 503)}


class VoiceMessageOut(Schema):
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime


def _out(message: VoiceMessage) -> dict:
    return {"content_type": message.content_type, "size": message.size, "sha256": message.sha256,
            "uploaded_at": message.uploaded_at}


def _person(request):
    return request.auth.holder


@router.put("/voice-message", response={200: VoiceMessageOut, **ERRORS},
            summary="Upload her recorded voice message (raw audio body)")
def upload(request):
    person = _person(request)
    if person is None:
        return error_response(409, "device_not_assigned", "this device is not assigned to a person")
    try:
        message = store_voice_message(person, request.body)
    except VoiceError as exc:
        return error_response(exc.status, exc.code, str(exc))
    return Status(200, _out(message))


@router.get("/voice-message", response={200: VoiceMessageOut, **ERRORS}, summary="Metadata of her voice message")
def read(request):
    person = _person(request)
    message = VoiceMessage.objects.filter(person=person).first() if person else None
    if message is None:
        return error_response(404, "not_found", "no recorded voice message: calls use the synthesised one")
    return Status(200, _out(message))


@router.delete("/voice-message", response={204: None, **ERRORS}, summary="Go back to the synthesised message")
def delete(request):
    person = _person(request)
    if person is None or not delete_voice_message(person):
        return error_response(404, "not_found", "no recorded voice message")
    return Status(204, None)
