"""The person's recorded voice message, and the words of a call."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess

from django.conf import settings

from balise.voice.models import VoiceMessage

log = logging.getLogger(__name__)


class VoiceError(Exception):
    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code = code
        self.status = status


# Formats every telephony provider can play, recognised by their first bytes.
def sniff_audio(data: bytes) -> str | None:
    if data[:4] == b"OggS":
        return "audio/ogg"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if data[4:8] == b"ftyp":
        return "audio/mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "audio/webm"
    return None


def store_voice_message(person, data: bytes) -> VoiceMessage:
    if not data:
        raise VoiceError("empty", "the body holds no audio")
    if len(data) > settings.VOICE_MESSAGE_MAX_BYTES:
        raise VoiceError("too_large", f"a voice message is limited to {settings.VOICE_MESSAGE_MAX_BYTES} bytes", 413)
    content_type = sniff_audio(data)
    if content_type is None:
        raise VoiceError("unsupported_format", "send Ogg (Opus or Vorbis), WAV, MP3, MP4/AAC or WebM audio", 415)
    message, _created = VoiceMessage.objects.update_or_create(
        person=person,
        defaults={"audio": data, "content_type": content_type, "size": len(data),
                  "sha256": hashlib.sha256(data).hexdigest()},
    )
    return message


def delete_voice_message(person) -> bool:
    return VoiceMessage.objects.filter(person=person).delete()[0] > 0


# -- speech synthesis ------------------------------------------------------------------

ESPEAK_VOICES = {"fr": "fr", "en": "en"}


def synthesize(text: str, language: str = "fr") -> bytes | None:
    """A WAV of TEXT spoken by espeak-ng (Debian package `espeak-ng`), or None when it
    is not installed: providers with their own text-to-speech read the text instead."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        return None
    voice = ESPEAK_VOICES.get(language, "fr")
    try:
        done = subprocess.run([binary, "-v", voice, "-s", "150", "--stdout"], input=text.encode(), capture_output=True,
                              timeout=20, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        log.warning("espeak-ng failed: %s", type(exc).__name__)
        return None
    return done.stdout if done.stdout[:4] == b"RIFF" else None
