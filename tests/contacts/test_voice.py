"""Voice: her recorded message through the device API, the call script, the console
provider's simulated calls, and text-to-speech."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from balise.alerts.models import Alert
from balise.dispatch.dispatcher import Dispatcher
from balise.providers.console import CallSimulator, ConsoleProvider, parse_outcomes, read_outbox
from balise.tracking import places
from balise.tracking.tokens import make_call_token
from balise.voice.actions import synthesize
from balise.voice.models import VoiceMessage
from tests.contacts.helpers import deliveries, raise_alert
from tests.spine.helpers import drain

OGG = b"OggS" + b"\x00" * 200


def put(client, world, body, content_type="audio/ogg"):
    return client.put("/api/v1/voice-message", body, content_type=content_type, **world.auth)


def test_upload_replace_read_and_delete_her_message(client, world):
    r = put(client, world, OGG)
    assert r.status_code == 200 and r.json()["content_type"] == "audio/ogg" and r.json()["size"] == len(OGG)
    assert put(client, world, b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x00" * 50).json()["content_type"] == "audio/wav"
    assert VoiceMessage.objects.get(person=world.person).content_type == "audio/wav"
    assert client.get("/api/v1/voice-message", **world.auth).json()["size"] == 66
    assert client.delete("/api/v1/voice-message", **world.auth).status_code == 204
    assert client.get("/api/v1/voice-message", **world.auth).status_code == 404


def test_bad_uploads_get_json_errors(client, world, settings):
    assert put(client, world, b"").status_code == 422
    assert put(client, world, b"<html>not audio</html>").status_code == 415
    settings.VOICE_MESSAGE_MAX_BYTES = 1000
    r = put(client, world, OGG + b"\x00" * 1000)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert client.put("/api/v1/voice-message", OGG, content_type="audio/ogg").status_code == 401
    assert not VoiceMessage.objects.exists()


def test_the_call_plays_her_message_then_the_location_then_press_1(client, world):
    places.preload()  # the call waits 3 s for place names: on a busy machine, load them first
    assert places._loaded.wait(120), "the offline gazetteer did not load"
    alert = raise_alert(world, "emergency")
    call = deliveries(alert, channel="voice").get()
    token = make_call_token(call.pk)
    twiml = client.get(f"/inbound/voice/{token}/twiml").content.decode()
    assert "<Gather" in twiml and "<Say" in twiml and "<Play>" not in twiml and "Camille" in twiml
    assert "Lyon" in twiml  # the location read out as a place, not as digits
    put(client, world, OGG)
    twiml = client.get(f"/inbound/voice/{token}/twiml").content.decode()
    assert "<Play>" in twiml and "/recording</Play>" in twiml
    assert "Camille" not in twiml.split("<Play>")[0]
    r = client.get(f"/inbound/voice/{token}/recording")
    assert r.status_code == 200 and r.content == OGG


def test_the_voice_text_asks_to_press_1(world):
    from balise.dispatch.messages import render

    alert = raise_alert(world, "alarm")
    text = render("alert", channel="voice", language="en", alert=alert, contact_id=None, fix=alert.fixes.first())
    assert "Press 1" in text and "Camille" in text and "latitude 45.75780" in text
    assert "Camille is in grave danger: her alarm has gone off." in text
    french = render("alert", channel="voice", language="fr", alert=alert, contact_id=None, fix=alert.fixes.first())
    # (it read "alarme déclenchée (alerte alarme)": the same word twice, and a label read aloud)
    assert "Camille est en grave danger : son alarme s'est déclenchée." in french and "(alerte" not in french


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (Debian package) not installed")
def test_text_to_speech_makes_a_wav(client, world):
    audio = synthesize("Alerte Balise. Appuyez sur 1.", "fr")
    assert audio[:4] == b"RIFF" and len(audio) > 10_000
    alert = raise_alert(world, "emergency")
    call = deliveries(alert, channel="voice").get()
    r = client.get(f"/inbound/voice/{make_call_token(call.pk)}/speech.wav")
    assert r.status_code == 200 and r.content[:4] == b"RIFF"


def test_outcome_scripts():
    script = parse_outcomes("+33612345601=no_answer, +33612345602=answered|pressed_1")
    sim = CallSimulator(script, "answered", 0, "http://x")
    assert [sim.outcome("+33612345602") for _ in range(3)] == ["answered", "pressed_1", "pressed_1"]
    assert sim.outcome("+33612345601") == "no_answer" and sim.outcome("+33600000000") == "answered"
    for bad in ("+336=maybe", "=answered", "+336"):
        with pytest.raises(ValueError):
            parse_outcomes(bad)


def test_console_calls_report_their_outcome_to_the_webhook(live_server, settings, tmp_path, world):
    """Emergency: contact 1 does not answer, contact 2 answers without pressing, contact
    3 presses 1. The console provider reports each outcome over HTTP like a real one."""
    settings.SITE_URL = live_server.url
    c1, c2, c3 = (c.phone for c in world.contacts[:3])
    sim = CallSimulator(parse_outcomes(f"{c1}=no_answer,{c2}=answered,{c3}=pressed_1"), "answered", 0.05, live_server.url)
    outbox = tmp_path / "outbox.jsonl"
    console = ConsoleProvider(str(outbox), stream=open("/dev/null", "w"), calls=sim)
    dispatcher = Dispatcher(name="console-test", providers=[console], workers=4)
    try:
        alert = raise_alert(world, "emergency")
        drain(dispatcher)
        from tests.contacts.helpers import Rig

        rig = Rig.__new__(Rig)
        rig.dispatcher = dispatcher
        for expected in ("call_unanswered", "call_answered"):
            deadline = time.monotonic() + 10
            while not alert.events.filter(kind=expected).exists():
                assert time.monotonic() < deadline, expected
                time.sleep(0.05)
            assert rig.fire_next_timer(alert)
        deadline = time.monotonic() + 10
        while Alert.objects.get(pk=alert.pk).state != Alert.State.ACKNOWLEDGED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ack = alert.acknowledgements.get()
        assert ack.channel == "voice" and ack.contact_id == world.contacts[2].pk
        calls = [r for r in read_outbox(outbox) if r["channel"] == "voice"]
        assert [(r["to"], r["outcome"]) for r in calls] == [(c1, "no_answer"), (c2, "answered"), (c3, "pressed_1")]
        assert all(json.dumps(r) for r in calls)
    finally:
        dispatcher.close()


def test_a_simulated_call_report_is_retried_with_the_same_signed_request(monkeypatch, settings):
    import httpx

    calls = []

    def post(url, content, headers, timeout):
        calls.append((url, content, dict(headers)))
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(403 if len(calls) > 2 else 200, request=httpx.Request("POST", url))

    monkeypatch.setattr("balise.providers.console.httpx.post", post)
    sim = CallSimulator({}, "pressed_1", 0, "http://127.0.0.1:9")
    sim.report("2210677b-6519-4a7f-8015-87b4a0c64ed6", "pressed_1")
    assert len(calls) == 2 and calls[0] == calls[1]
    url, content, headers = calls[0]
    assert content == b"CallStatus=completed&Digits=1" and "X-Balise-Signature" in headers and "X-Balise-Timestamp" in headers
    sim.report("2210677b-6519-4a7f-8015-87b4a0c64ed6", "pressed_1")  # refused: not retried
    assert len(calls) == 3
