"""The SMPP provider against a real SMSC: Jasmin (tests/providers/smsc/jasmin.py), started
on loopback with the machine's RabbitMQ and Redis. Behind Jasmin, the network that hands
messages to handsets is played by tests/providers/smsc/network.py (no handset can be
reached from here): it answers, sends receipts (DELIVRD; UNDELIV to numbers ending in
0000), and can send a handset's reply, all through Jasmin.

The pure parts (GSM 03.38 / UCS-2 encoding and concatenation, receipt texts) are tested
first without any server."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace

import pytest

from balise.alerts.models import Alert, AlertEvent
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery
from balise.providers import health as provider_health
from balise.providers.base import AmbiguousError, OutgoingMessage, ProviderError, RateLimitedError
from balise.providers.registry import build_providers
from balise.providers.smpp import GSM7, UCS2, SmppProvider, decode, encode, parse_receipt
from tests.personas import make_world
from tests.providers.smsc.jasmin import NUMBER, PASSWORD, SYSTEM_ID
from tests.providers.smsc.proxy import CuttableProxy
from tests.spine.helpers import drain

LONG_FR = ("Camille a besoin d'aide maintenant. Elle est près de la place Bellecour, Lyon 2e. "
           "Voir sa position en direct : https://balise.example.org/s/Ab3dE5gH9 puis appelez-la. ") * 2


def reassemble(parts: list[bytes], coding: int) -> str:
    """The text of PARTS as a handset shows it: UDH dropped, parts in their order."""
    if len(parts) == 1:
        return decode(parts[0], coding)
    ordered = sorted(parts, key=lambda p: p[5])
    assert {p[:4] for p in ordered} == {ordered[0][:4]} and [p[5] for p in ordered] == list(range(1, len(parts) + 1))
    assert all(p[4] == len(parts) for p in ordered)
    return "".join(decode(p, coding, esm_class=0x40) for p in ordered)


# -- encoding and receipts, no server ---------------------------------------------------

def test_gsm_7bit_fits_160_characters_in_one_part_and_concatenates_beyond():
    coding, parts = encode("a" * 160)
    assert coding == GSM7 and len(parts) == 1 and len(parts[0]) == 160
    coding, parts = encode("a" * 161)
    assert coding == GSM7 and [len(p) for p in parts] == [6 + 153, 6 + 8]
    assert parts[0][:3] == b"\x05\x00\x03" and parts[0][4:6] == b"\x02\x01" and parts[1][4:6] == b"\x02\x02"
    assert reassemble(parts, GSM7) == "a" * 161


def test_an_extension_character_counts_two_septets_and_is_never_split():
    text = "a" * 152 + "€" + "b" * 20  # the escape and its character would straddle parts 1 and 2
    coding, parts = encode(text)
    assert coding == GSM7 and parts[0][6:].endswith(b"a") and parts[1][6:8] == b"\x1b\x65"
    assert reassemble(parts, GSM7) == text
    assert len(encode("€" * 80)[1]) == 1 and len(encode("€" * 81)[1]) == 2


def test_a_character_outside_gsm_makes_the_whole_message_ucs2():
    coding, parts = encode("Привет " * 10)  # 70 characters
    assert coding == UCS2 and len(parts) == 1 and decode(parts[0], UCS2) == "Привет " * 10
    text = "Ёлка 🎄 " * 12  # 96 characters, one of them outside the BMP (a surrogate pair)
    coding, parts = encode(text)
    assert coding == UCS2 and len(parts) == 2 and all(len(p) <= 140 for p in parts)
    assert reassemble(parts, UCS2) == text
    assert encode(LONG_FR)[0] == GSM7  # French accents (é, è, à) are in the GSM alphabet


def test_receipts_are_read_from_their_text_or_their_tlvs():
    assert parse_receipt("id:abc sub:001 dlvrd:001 submit date:2612010000 done date:2612010000 stat:DELIVRD "
                         "err:000 text:") == ("abc", "delivered", "")
    assert parse_receipt("id:x1 stat:UNDELIV err:001") == ("x1", "undelivered", "001")
    assert parse_receipt("", tlv_id="t9", tlv_state=8) == ("t9", "failed", "")
    assert parse_receipt("OK") is None and parse_receipt("id:1 stat:UNKNOWN") is None


# -- against Jasmin ---------------------------------------------------------------------

def message(key: str, to: str, text: str) -> OutgoingMessage:
    return OutgoingMessage(key=key, channel="sms", to=to, text=text, language="fr", alert_id=0, alert_kind="prevention",
                           purpose="alert")


def wait_for(condition, timeout: float = 30.0, what: str = "the condition"):
    """Wait for CONDITION (receipts come back through Jasmin's queues), up to TIMEOUT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Collected:
    def __init__(self):
        self.receipts, self.incoming = [], []
        self.lock = threading.Lock()

    def receipt(self, event):
        with self.lock:
            self.receipts.append(event)

    def reply(self, sender, text):
        with self.lock:
            self.incoming.append((sender, text))


@pytest.fixture
def direct(smsc):
    """The provider bound to Jasmin, its receipts and replies collected."""
    got = Collected()
    provider = SmppProvider("127.0.0.1", smsc.port, SYSTEM_ID, PASSWORD, source_addr=NUMBER, timeout=10.0,
                            on_receipt=got.receipt, on_incoming=got.reply, backoff=(0.05, 0.5))
    provider.got = got
    yield provider
    provider.close()


def submitted_to(smsc, number: str):
    return [s for s in smsc.network.texts() if s.destination == number.lstrip("+")]


def test_submit_and_receipt_matched_by_message_id(direct, smsc):
    result = direct.send(message("k-1", "+33611000001", "Bonjour Alex"))
    (mid,) = result.provider_ref.split()
    receipt = wait_for(lambda: [r for r in direct.got.receipts if r.message_id == mid], what="the receipt")[0]
    assert (receipt.key, receipt.state, receipt.error) == ("k-1", "delivered", "")
    (sent,) = submitted_to(smsc, "+33611000001")
    assert sent.data_coding == GSM7 and decode(sent.short_message, GSM7) == "Bonjour Alex"
    assert direct.status()["bound"] is True


def test_long_messages_are_concatenated_with_udh_in_gsm_and_ucs2(direct, smsc):
    for key, to, text, coding in (("k-gsm", "+33611000002", LONG_FR, GSM7),
                                  ("k-ucs2", "+33611000003", "Ёлка 🎄 Привет, Алекс! " * 8, UCS2)):
        ids = direct.send(message(key, to, text)).provider_ref.split()
        # (Jasmin hands each part to the network through its queue: they arrive a moment later)
        parts = wait_for(lambda: len(submitted_to(smsc, to)) >= len(ids) and submitted_to(smsc, to),
                         what="every part at the network")
        assert len(ids) == len(parts) > 1 and {p.data_coding for p in parts} == {coding}
        assert all(p.esm_class & 0x40 for p in parts)
        assert reassemble([p.short_message for p in parts], coding) == text
        got = wait_for(lambda: {r.message_id for r in direct.got.receipts if r.key == key} >= set(ids) or None,
                       what="a receipt per part")
        assert got


def test_throttled_by_the_smsc_the_messages_wait_and_go(direct, smsc):
    smsc.throughput(1)  # Jasmin answers ESME_RTHROTTLED beyond one submit_sm a second
    try:
        direct.throttle_pause = 0.5
        direct.throttle_tries = 10
        throttled = []
        original = direct._submit

        def counting(client, params):
            waiter = original(client, params)
            if waiter.status == 0x58:
                throttled.append(params["destination_addr"])
            return waiter

        direct._submit = counting
        numbers = [f"+3361100010{i}" for i in range(4)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda n: direct.send(message(f"k-{n}", n, f"Message {n}")), numbers))
        assert all(r.provider_ref for r in results)
        assert throttled, "Jasmin never throttled: the test did not test throttling"
        wait_for(lambda: all(submitted_to(smsc, n) for n in numbers), what="the messages at the network")
        assert all(len(submitted_to(smsc, n)) == 1 for n in numbers)  # each once, however often throttled
    finally:
        smsc.throughput(None)


def test_throttled_beyond_its_patience_the_message_is_retried_later(direct, smsc):
    smsc.throughput(1)
    try:
        direct.throttle_pause, direct.throttle_tries = 0.3, 10
        direct.send(message("k-first", "+33611000200", "premier"))  # (takes this second's one message)
        direct.throttle_pause, direct.throttle_tries = 0.01, 1
        with pytest.raises(RateLimitedError):
            direct.send(message("k-second", "+33611000201", "second"))
        assert submitted_to(smsc, "+33611000201") == []
    finally:
        smsc.throughput(None)


def test_a_connection_dropped_in_the_middle_of_a_burst_loses_nothing_and_sends_nothing_twice(smsc):
    """40 messages from 8 workers; the link is reset after the 10th answer. The provider
    binds again (with backoff) and the workers retry as the dispatcher does. Every
    message reaches the network; none reaches it twice, except one whose submit_sm was
    in flight at the cut (its answer lost: AmbiguousError), which SMPP cannot tell."""
    proxy = CuttableProxy(smsc.port)
    got = Collected()
    provider = SmppProvider("127.0.0.1", proxy.port, SYSTEM_ID, PASSWORD, source_addr=NUMBER, timeout=3.0,
                            on_receipt=got.receipt, backoff=(0.05, 0.5))
    answered, ambiguous, lock = [0], set(), threading.Lock()
    cut_done = threading.Event()

    def send(i: int) -> str:
        m = message(f"burst-{i}", f"+336120{i:05d}", f"Alerte burst {i}")
        while True:
            try:
                ref = provider.send(m).provider_ref
            except AmbiguousError:
                with lock:
                    ambiguous.add(i)
                continue  # (no other provider here: the dispatcher retries on the same one)
            except ProviderError:
                time.sleep(0.05)  # (the dispatcher's retry delay, shortened)
                continue
            with lock:
                answered[0] += 1
                if answered[0] == 10 and not cut_done.is_set():
                    cut_done.set()
                    proxy.cut()
            return ref

    try:
        with ThreadPoolExecutor(8) as pool:
            refs = list(pool.map(send, range(40)))
        assert cut_done.is_set() and proxy.connections >= 2 and provider.binds >= 2
        wait_for(lambda: all(submitted_to(smsc, f"+336120{i:05d}") for i in range(40)), what="the burst at the network")
        time.sleep(1.0)  # (a duplicate would come through Jasmin's queue behind the others)
        counts = {i: len(submitted_to(smsc, f"+336120{i:05d}")) for i in range(40)}
        assert all(n >= 1 for n in counts.values()), "a message was lost"
        twice = {i for i, n in counts.items() if n > 1}
        assert twice <= ambiguous, f"sent twice without an ambiguous answer: {twice - ambiguous}"
        assert all(refs)
        print(f"cut after 10 answers: {len(ambiguous)} ambiguous, {len(twice)} sent twice")
    finally:
        provider.close()
        proxy.close()


def test_providers_check_binds_and_unbinds_without_sending(smsc, settings, capsys):
    from balise.providers.cli import cmd_check

    settings.PROVIDERS = ["smpp"]
    settings.SMPP_HOST, settings.SMPP_PORT = "127.0.0.1", smsc.port
    settings.SMPP_SYSTEM_ID, settings.SMPP_PASSWORD, settings.SMPP_SOURCE_ADDR = SYSTEM_ID, PASSWORD, NUMBER
    before = len(smsc.network.texts())
    assert cmd_check(SimpleNamespace()) == 0
    assert "smpp: ok (bound to" in capsys.readouterr().out
    settings.SMPP_PASSWORD = "wrong"
    assert cmd_check(SimpleNamespace()) == 1
    assert "smpp: FAILED (the SMSC refused the bind" in capsys.readouterr().err
    assert len(smsc.network.texts()) == before


# -- through the dispatcher, receipts and replies to the alert ---------------------------

@pytest.fixture
def smpp_settings(settings, smsc):
    settings.PROVIDERS = ["smpp", "console"]
    settings.SMPP_HOST, settings.SMPP_PORT = "127.0.0.1", smsc.port
    settings.SMPP_SYSTEM_ID, settings.SMPP_PASSWORD, settings.SMPP_SOURCE_ADDR = SYSTEM_ID, PASSWORD, NUMBER
    return settings


@pytest.mark.django_db(transaction=True)
def test_alert_sms_go_out_by_smpp_receipts_reach_deliveries_and_failures_go_to_the_next_provider(
        smpp_settings, smsc, client):
    world = make_world(slug="smpp", contacts=3)
    lost = world.contacts[2]
    lost.phone = "+33699990000"  # the network reports UNDELIV
    lost.save()
    from tests.contacts.helpers import raise_alert

    provider_health.forget()
    providers = build_providers()
    dispatcher = Dispatcher(name="smpp-test", providers=providers, workers=4)
    try:
        alert = raise_alert(world, "prevention")
        drain(dispatcher)
        sms = Delivery.objects.filter(alert=alert, channel="sms", replaces=None)
        assert sms.count() == 3 and {d.provider for d in sms} == {"smpp"}
        assert all(d.state == Delivery.State.SENT and d.provider_ref for d in sms)
        assert client.get("/health").json()["providers"]["smpp"]["bound"] is True

        # Receipts come back on the session and are written on the deliveries.
        wait_for(lambda: Delivery.objects.filter(alert=alert, carrier_state="delivered").count() == 2,
                 what="two delivered receipts")
        failed = wait_for(lambda: Delivery.objects.filter(alert=alert, recipient=lost.phone,
                                                          carrier_state="undelivered").first(), what="UNDELIV")
        assert failed.carrier_error == "001"
        # The undelivered SMS goes again, through the next provider (the console here).
        again = wait_for(lambda: Delivery.objects.filter(replaces=failed).first(), what="the re-send")
        assert again.avoid_providers == "smpp" and again.recipient == lost.phone
        drain(dispatcher)
        again.refresh_from_db()
        assert again.state == Delivery.State.SENT and again.provider == "console"
        states = {e.data["state"] for e in AlertEvent.objects.filter(alert=alert, kind="carrier_state")}
        assert states == {"delivered", "undelivered"}
        assert Delivery.objects.filter(alert=alert, replaces__isnull=False).count() == 1
        assert len(submitted_to(smsc, lost.phone)) == 1  # not re-sent through SMPP

        # A contact's reply "OK" comes in on the same session and acknowledges the alert.
        smsc.network.send_mo(world.contacts[0].phone, NUMBER, "OK")
        wait_for(lambda: Alert.objects.get(pk=alert.pk).state == Alert.State.ACKNOWLEDGED, what="the acknowledgement")
    finally:
        dispatcher.close()
        for p in providers:
            p.close()
