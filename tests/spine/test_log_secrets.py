"""Logs without secrets: every error path that logs a request (404, 405, CSRF failure,
bad signature, invalid token, a 500 inside a view, uvicorn's access log) is driven with
real contact-link, consent, call and device tokens and real phone numbers, and the log
as the configured handlers write it (all loggers, all levels) must hold none of them."""

from __future__ import annotations

import io
import logging
import re
import threading

import httpx
import pytest
import uvicorn
from django.test import Client

from balise.asgi import application  # (sets logging up again: before the log is captured)
from balise.logfilter import MaskSecrets, mask
from balise.tracking.tokens import make_call_token, make_consent_token
from tests.contacts.helpers import deliveries, page_link, raise_alert, signed_post
from tests.spine.loopback import free_port, wait_until

PYTEST_HANDLERS = ("_pytest.",)


def _app_handlers() -> list[logging.Handler]:
    """Every handler of the logging tree that writes somewhere (libraries' NullHandlers
    write nothing), but pytest's own capture handlers."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    return [h for lg in loggers for h in lg.handlers
            if not type(h).__module__.startswith(PYTEST_HANDLERS) and not isinstance(h, logging.NullHandler)]


@pytest.fixture
def written_log():
    """What the configured handlers write, every logger down to DEBUG, in a buffer."""
    handlers = _app_handlers()
    assert handlers, "settings.LOGGING configures no handler"
    buffer = io.StringIO()
    # (not setStream: it flushes the old stream, which an earlier test may have closed)
    saved_streams = [(h, h.stream, h.level) for h in handlers if isinstance(h, logging.StreamHandler)]
    for h, _stream, _level in saved_streams:
        h.stream = buffer
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    saved_levels = [(lg, lg.level) for lg in loggers]
    for h, _stream, _level in saved_streams:
        h.setLevel(logging.DEBUG)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        for lg, level in saved_levels:
            lg.setLevel(level)
        for h, stream, level in saved_streams:
            h.stream = stream
            h.setLevel(level)


def test_every_handler_masks_secrets():
    handlers = _app_handlers()
    assert handlers
    for handler in handlers:
        assert any(isinstance(f, MaskSecrets) for f in handler.filters), handler


def test_mask_tokens_and_phone_numbers_but_not_times_or_ids():
    line = ('GET /a/eyJhIjoxfQ:1tq2:abc/state?token=s3cr3t HTTP/1.1 /c/Zm9v:x /inbound/voice/YWJj:1:2/twiml '
            'Authorization: Bearer bal_AbC-12_x +33612345601 +33 6 12 34 56 02 0033612345603 '
            '06 12 34 56 04 06.12.34.56.05 0612345606 From=%2B33612345607')
    masked = mask(line)
    for secret in ("eyJhIjoxfQ", "s3cr3t", "Zm9v", "YWJj", "bal_AbC", "12345601", "34 56 02", "12345603",
                   "34 56 04", "34.56.05", "12345606", "12345607"):
        assert secret not in masked, secret
    assert masked.count("[phone]") == 7 and "/a/***/state" in masked and "/inbound/voice/***/twiml" in masked
    masked = mask('/integrations/flic/p/flp_k3Y-x/ {"code": "KQ7WX-RM4TZ"} {\'token\': \'eyJ.a.b\'} flp_k3Y2 /inbound/status/Zm9:1')
    assert masked == "/integrations/flic/p/***/ {\"code\": \"***\"} {'token': '***'} flp_*** /inbound/status/***", masked
    harmless = "2026-11-30 22:20:08,123 alert 1234567890 uuid 0a1b2c3d-0612-3456-7800-123456789012 took 0.0612345678 s"
    assert mask(harmless) == harmless


FLIC_KEY = "flp_" + "Zq7" * 14  # the form of a Flic private-link key (balise.integrations.flic.page)
FLIC_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmbGljIn0.c2lnbmF0dXJlLW9mLWZsaWM"
PAIRING_CODE = "KQ7WXRM4TZ"


def _secrets(world, link: str, call_token: str) -> list[str]:
    phones = []
    for contact in world.contacts:
        national = "0" + contact.phone[3:]  # +33612345601 -> 0612345601
        phones += [contact.phone, national, " ".join([national[:2], *re.findall("..", national[2:])])]
    return [link, make_consent_token(world.contacts[0]), call_token, world.token, FLIC_KEY, FLIC_JWT, PAIRING_CODE,
            *phones]


def _run_uvicorn(port: int):
    config = uvicorn.Config(application, host="127.0.0.1", port=port, log_level="info", access_log=True,
                            lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    return server, thread


@pytest.mark.django_db(transaction=True)
def test_error_paths_log_no_token_and_no_phone_number(world, written_log, monkeypatch, settings):
    settings.ALLOWED_HOSTS = ["*"]
    alert = raise_alert(world, "emergency")
    call = deliveries(alert, channel="voice").get()
    link = page_link(alert, world.contacts[0]).rsplit("/", 1)[1]  # the live page's short link
    consent, call_token = make_consent_token(world.contacts[0]), make_call_token(call.pk)
    phone = world.contacts[0].phone
    client = Client(raise_request_exception=False)
    strict = Client(enforce_csrf_checks=True)
    status = {}

    # 404: unknown paths under real tokens
    for path in (f"/s/{link}/nope", f"/c/{consent}/nope", f"/inbound/voice/{call_token}/nope"):
        status[path] = client.get(path).status_code
    status["flic-private-404"] = client.get(f"/integrations/flic/p/{FLIC_KEY}/nope").status_code
    status["flic-private-bad"] = client.get(f"/integrations/flic/p/{FLIC_KEY}/").status_code
    status["flic-webview-bad"] = client.get(f"/integrations/flic/page/?token={FLIC_JWT}").status_code
    status["pair-bad-code"] = client.post("/api/v1/pair", {"code": PAIRING_CODE}, content_type="application/json").status_code
    # 405
    status["put"] = client.put(f"/s/{link}").status_code
    status["get-callback"] = client.get(f"/inbound/voice/{call_token}").status_code
    status["get-status"] = client.get(f"/inbound/status/{call_token}").status_code
    # CSRF failures
    status["csrf-a"] = strict.post(f"/s/{link}", {"phone": phone}).status_code
    status["csrf-recording"] = strict.post(f"/inbound/voice/{call_token}/recording").status_code
    # bad signatures
    status["unsigned-call"] = client.post(f"/inbound/voice/{call_token}", {"Digits": "1"}).status_code
    status["unsigned-status"] = client.post(f"/inbound/status/{call_token}", {"MessageStatus": "delivered"}).status_code
    status["unsigned-sms"] = client.post("/inbound/sms", {"From": phone, "Body": "OK"}).status_code
    # invalid tokens, in the path and in a query
    status["bad-link"] = client.get(f"/s/{link}x?token={link}").status_code
    status["bad-consent"] = client.get(f"/c/{consent}x").status_code
    status["bad-device"] = client.post("/api/v1/alerts", "{}", content_type="application/json",
                                       HTTP_AUTHORIZATION=f"Bearer {world.token}x").status_code
    status["device-bad-body"] = client.post("/api/v1/alerts", "{", content_type="application/json",
                                            HTTP_AUTHORIZATION=f"Bearer {world.token}").status_code

    # 500s inside views, with the secrets in the exception's message
    def boom(*args, **kwargs):
        raise RuntimeError(f"cannot reach {phone} (06 12 34 56 01) for /s/{link} with Bearer {world.token}")

    def pairing_boom(code, *args, **kwargs):
        raise RuntimeError(f"cannot pair {{'code': '{code}'}} from /integrations/flic/p/{FLIC_KEY}/ ({FLIC_KEY})")

    monkeypatch.setattr("balise.api.pairing.exchange", pairing_boom)
    status["500-pair"] = client.post("/api/v1/pair", {"code": PAIRING_CODE}, content_type="application/json").status_code
    monkeypatch.setattr("balise.inbound.actions.sms_reply", boom)
    monkeypatch.setattr("balise.tracking.views._resolve", boom)
    status["500-sms"] = signed_post(client, "/inbound/sms", {"From": phone, "Body": "OK"}).status_code
    status["500-page"] = client.get(f"/s/{link}").status_code

    # uvicorn's access log and error log, from a real server
    port = free_port()
    server, thread = _run_uvicorn(port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            status["uvicorn-404"] = http.get(f"/s/{link}/nope").status_code
            status["uvicorn-consent"] = http.get(f"/c/{consent}/nope?token={consent}").status_code
            status["uvicorn-flic"] = http.get(f"/integrations/flic/page/?token={FLIC_JWT}").status_code
            status["uvicorn-500"] = http.get(f"/s/{link}", headers={"Authorization": f"Bearer {world.token}"}).status_code
    finally:
        server.should_exit = True
        thread.join(timeout=60)

    assert status == {
        f"/s/{link}/nope": 404, f"/c/{consent}/nope": 404, f"/inbound/voice/{call_token}/nope": 404,
        "put": 405, "get-callback": 405, "csrf-a": 403, "csrf-recording": 403, "unsigned-call": 403,
        "unsigned-sms": 403, "bad-link": 404, "bad-consent": 404, "bad-device": 401, "device-bad-body": 400,
        "500-sms": 500, "500-page": 500, "uvicorn-404": 404, "uvicorn-consent": 404, "uvicorn-500": 500,
        "flic-private-404": 404, "flic-private-bad": 404, "flic-webview-bad": 401,
        "pair-bad-code": 400, "get-status": 405, "unsigned-status": 403, "500-pair": 500,
        "uvicorn-flic": 401,
    }, status
    text = written_log.getvalue()
    # the paths were logged (masked), so the check below is not vacuous
    for logged in ("Not Found: /s/***/nope", "Not Found: /c/***/nope", "Method Not Allowed (PUT): /s/***",
                   "Forbidden (CSRF cookie not set.): /s/***", "Internal Server Error: /inbound/sms",
                   "Internal Server Error: /s/***", "RuntimeError: cannot reach [phone] ([phone]) for /s/***",
                   "refused a callback without a valid signature", '"GET /s/***/nope HTTP/1.1" 404',
                   '"GET /c/***/nope?token=*** HTTP/1.1" 404',
                   "Not Found: /integrations/flic/p/***/nope", "Method Not Allowed (GET): /inbound/status/***",
                   "Internal Server Error: /api/v1/pair", "cannot pair {'code': '***'} from /integrations/flic/p/***/",
                   '"GET /integrations/flic/page/?token=*** HTTP/1.1" 401'):
        assert logged in text, logged
    flat = re.sub(r"[ .\-]", "", text)
    for secret in _secrets(world, link, call_token):
        assert secret not in text, secret
        assert re.sub(r"[ .\-]", "", secret) not in flat, secret


def test_uvicorn_run_by_hand_masks_its_access_log(tmp_path):
    """The README's multi-core deployment: `uvicorn balise.asgi:application` configures
    its own logging first; Balise's settings then put the masking handler in its place."""
    import os
    import subprocess
    import sys

    from tests.spine.loopback import SRC

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(SRC), BALISE_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="balise.settings")
    out = open(tmp_path / "uvicorn.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "balise.asgi:application", "--host", "127.0.0.1",
                             "--port", str(port), "--lifespan", "off"], env=env, stdout=out, stderr=subprocess.STDOUT)
    link, phone = "WzEsMV0:1xY9na:X70OWeryjNZ6_LHxY1TFPh6C3RTrUpznYZVUahBq2", "+33612345601"
    try:
        def answered():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/a/{link}/nope?token={link}&to={phone}", timeout=5).status_code
            except httpx.TransportError:
                return None

        assert wait_until(answered, timeout=120, what="uvicorn to answer") == 404
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()
    text = (tmp_path / "uvicorn.log").read_text()
    assert 'uvicorn.access' in text and '"GET /a/***/nope?token=***&to=[phone] HTTP/1.1" 404' in text, text
    assert link not in text and "612345601" not in text
