"""Escalation chains per alert kind, and acknowledgement at every step of them."""

from __future__ import annotations

import pytest
from django.utils import timezone

from balise.alerts.models import Acknowledgement, Alert, AlertEvent
from balise.dispatch.models import EscalationTimer
from balise.dispatch.plans import DEFAULT_PLANS
from balise.inbound.actions import call_event, sms_reply
from balise.people.models import Contact
from balise.tracking.actions import answer_alert
from tests.contacts.helpers import deliveries, raise_alert

ON_CALL = "+33472000000"


def walk(rig, alert) -> list[list[tuple[str, str]]]:
    """Fire every escalation step; the (channel, recipient) of each."""
    steps = []
    while True:
        before = {d.pk for d in deliveries(alert)}
        if not rig.fire_next_timer(alert):
            return steps
        new = deliveries(alert).exclude(pk__in=before).order_by("channel", "recipient")
        steps.append([(d.channel, d.recipient) for d in new])


def phones(world, *positions):
    return [world.contacts[p - 1].phone for p in positions]


def test_prevention_sms_then_calls_one_by_one_then_on_call(rig, world):
    alert = raise_alert(world, "prevention")
    rig.drain()
    assert sorted(m.to for m in rig.sent(alert, channel="sms")) == sorted(phones(world, 1, 2, 3, 4, 5))
    assert not rig.sent(alert, channel="voice")
    timer = EscalationTimer.objects.get(alert=alert, state="pending")
    assert 295 <= (timer.due_at - alert.created_at).total_seconds() <= 305  # 5 minutes
    steps = walk(rig, alert)
    assert steps == [[("voice", p)] for p in phones(world, 1, 2, 3, 4, 5)] + [[("sms", ON_CALL), ("voice", ON_CALL)]]
    events = list(AlertEvent.objects.filter(alert=alert, kind="escalated").values_list("data", flat=True))
    assert [e["step"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0]["sends"] == [{"channel": "voice", "contact": world.contacts[0].pk}]


def test_emergency_calls_one_by_one_three_rounds_then_on_call(rig, world):
    alert = raise_alert(world, "emergency")
    rig.drain()
    assert [m.to for m in rig.sent(alert, channel="voice")] == phones(world, 1)
    assert len(rig.sent(alert, channel="sms")) == 5  # the live map to everyone at once
    steps = walk(rig, alert)
    calls = [[("voice", p)] for p in phones(world, 2, 3, 4, 5)] + [[("voice", p)] for p in phones(world, 1, 2, 3, 4, 5)] * 2
    assert steps == calls + [[("sms", ON_CALL), ("voice", ON_CALL)]]


def test_alarm_everyone_at_once_repeated_every_two_minutes(rig, world):
    alert = raise_alert(world, "alarm")
    rig.drain()
    assert sorted(m.to for m in rig.sent(alert, channel="voice")) == sorted(phones(world, 1, 2, 3, 4, 5) + [ON_CALL])
    timer = EscalationTimer.objects.get(alert=alert, state="pending")
    assert 115 <= (timer.due_at - timezone.now()).total_seconds() <= 121
    for _ in range(3):
        before = deliveries(alert).count()
        assert rig.fire_next_timer(alert)
        new = deliveries(alert).order_by("created_at")[before:]
        assert sorted((d.channel, d.recipient) for d in new) == sorted(
            [("voice", p) for p in phones(world, 1, 2, 3, 4, 5)] + [("voice", ON_CALL)])


def test_missing_contacts_are_skipped_without_waiting(rig, db):
    from tests.personas import make_world

    world = make_world("tours", contacts=2)
    alert = raise_alert(world, "emergency")
    rig.drain()
    steps = walk(rig, alert)
    # 2 contacts: 1 (initial), 2, then round 2: 1, 2, round 3: 1, 2, then the on-call line:
    # ranks 3-5 are skipped at once instead of costing a minute each.
    assert steps == [[("voice", phones(world, 2)[0])], [("voice", phones(world, 1)[0])], [("voice", phones(world, 2)[0])],
                     [("voice", phones(world, 1)[0])], [("voice", phones(world, 2)[0])],
                     [("sms", ON_CALL), ("voice", ON_CALL)]]
    skipped = [e.data["skipped"] for e in AlertEvent.objects.filter(alert=alert, kind="escalated")]
    assert skipped == [0, 3, 0, 3, 0, 3]


def test_a_contact_who_declined_receives_no_prevention_or_emergency_alert_but_the_alarm(rig, world):
    declined, withdrawn, pending = world.contacts[0], world.contacts[1], world.contacts[2]
    for contact, state in ((declined, "declined"), (withdrawn, "withdrawn"), (pending, "pending")):
        contact.consent = state
        contact.save()
    excluded = {declined.phone, withdrawn.phone, pending.phone}
    for kind in ("prevention", "emergency"):
        alert = raise_alert(world, kind)
        rig.drain()
        walk(rig, alert)
        reached = {d.recipient for d in deliveries(alert)}
        assert not reached & excluded, kind
        assert {world.contacts[3].phone, world.contacts[4].phone} <= reached
    alarm = raise_alert(world, "alarm")
    rig.drain()
    assert excluded <= {m.to for m in rig.sent(alarm)}  # an alarm reaches every registered contact


def _chain_length(kind: str) -> int:
    return len(DEFAULT_PLANS[kind].chain)


def _ack(world, alert, how: str):
    """Acknowledge through one of the four channels, as the first contact reached."""
    if how == "voice":
        call = deliveries(alert, channel="voice", contact__isnull=False).order_by("-created_at").first()
        if call is not None:
            assert call_event(str(call.pk), digits="1", status="completed") == "acknowledged"
            return call.contact
        how = "page"
    if how == "sms":
        sms = deliveries(alert, channel="sms", contact__isnull=False).first()
        if sms is not None:
            assert sms_reply(sms.recipient, "OK")[0] == "acknowledged"
            return sms.contact
        how = "page"
    if how == "staff":
        answer_alert(alert, channel=Acknowledgement.Channel.STAFF, staff=world.staff)
        return None
    contact = deliveries(alert, contact__isnull=False).first().contact
    answer_alert(alert, channel=Acknowledgement.Channel.PAGE, answer="on_my_way", contact=contact)
    return contact


CASES = [(kind, step) for kind in ("prevention", "emergency") for step in range(_chain_length(kind) + 1)]
CASES += [("alarm", step) for step in (0, 1, 2, _chain_length("alarm") - 1, _chain_length("alarm"))]


@pytest.mark.parametrize("kind,step", CASES)
def test_acknowledgement_at_any_step_stops_the_escalation(rig, world, kind, step):
    alert = raise_alert(world, kind)
    rig.drain()
    for _ in range(step):
        assert rig.fire_next_timer(alert)
    how = ("page", "sms", "voice", "staff")[step % 4]
    responder = _ack(world, alert, how)
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED
    rig.drain()
    escalations = deliveries(alert, purpose="escalation").count()
    # Whatever timers were armed are now stale, and the auditor re-arms nothing.
    EscalationTimer.objects.filter(alert=alert, state="pending").update(due_at=timezone.now())
    rig.dispatcher.run_due_timers()
    assert rig.dispatcher.audit() == 0
    rig.drain()
    assert deliveries(alert, purpose="escalation").count() == escalations
    assert not EscalationTimer.objects.filter(alert=alert, state="pending").exists()
    # The other contacts already reached are told that someone is on it; not the responder.
    reached = {d.contact_id for d in deliveries(alert, state="sent", purpose__in=["alert", "escalation"])} - {None}
    told = {d.contact_id for d in deliveries(alert, purpose="notice", template="ack")}
    assert told == reached - {responder.pk if responder else None}
    assert all(d.state == "sent" for d in deliveries(alert, purpose="notice"))


def test_cannot_help_does_not_stop_the_escalation(rig, world):
    alert = raise_alert(world, "emergency")
    rig.drain()
    answer_alert(alert, channel="page", answer="cannot_help", contact=world.contacts[0])
    alert.refresh_from_db()
    assert alert.state == Alert.State.OPEN
    assert rig.fire_next_timer(alert)
    assert deliveries(alert, purpose="escalation").count() == 1
    assert not deliveries(alert, purpose="notice").exists()


def test_the_acknowledgement_notice_names_the_responder_in_each_language(rig, world):
    alert = raise_alert(world, "prevention")
    rig.drain()
    answer_alert(alert, channel="page", answer="called_police", contact=world.contacts[1])
    rig.drain()
    notices = {m.to: m.text for m in rig.sent(alert, purpose="notice")}
    assert set(notices) == {c.phone for c in world.contacts if c.pk != world.contacts[1].pk}
    # (French wording arrives with the project's translation pass; contact 5 reads English)
    assert "Proche 2 called the police for Camille" in notices[world.contacts[4].phone]
    assert all("Proche 2" in text and "Camille" in text and "/s/" in text for text in notices.values())


def test_a_contact_changing_answer_is_kept_and_repeats_are_not(world):
    alert = raise_alert(world, "prevention")
    c = world.contacts[0]
    answer_alert(alert, channel="page", answer="on_my_way", contact=c)
    answer_alert(alert, channel="page", answer="on_my_way", contact=c)
    answer_alert(alert, channel="page", answer="called_police", contact=c)
    assert list(alert.acknowledgements.values_list("answer", flat=True)) == ["on_my_way", "called_police"]
    assert Contact.objects.get(pk=c.pk).consent == "accepted"
