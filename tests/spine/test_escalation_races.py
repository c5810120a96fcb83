"""Acknowledgements and cancels racing escalation timers, and the auditor that re-arms
an open alert whose timer was lost.

After an acknowledgement, a cancel or a resolution commits, nothing new goes out for the
alert's escalation: timers that fire later are stale, escalation deliveries still
pending are cancelled or fenced. Only what a dispatcher had already handed to a provider
at that moment may still arrive."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.db import transaction
from django.utils import timezone as dj_timezone

from balise.alerts.actions import FixIn, acknowledge_alert, cancel_alert, create_alert, resolve_alert
from balise.alerts.models import Alert
from balise.dispatch.dispatcher import Dispatcher
from balise.dispatch.models import Delivery, EscalationTimer
from tests.personas import CANCEL_PIN, another_holder
from tests.spine.helpers import RecordingProvider, drain
from tests.spine.loopback import Reply, wait_until

pytestmark = pytest.mark.django_db(transaction=True)  # the dispatcher closes connections between ticks

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)
VOICE_TO_CONSENTING = {"channel": "voice", "audience": "consenting"}


def fast_chain(association, steps: int, after_s: int = 0) -> None:
    """Prevention alerts escalate STEPS times, AFTER_S seconds apart, by calling everyone."""
    association.alert_plans = {
        "prevention": {"chain": [{"after_s": after_s, "sends": [VOICE_TO_CONSENTING]} for _ in range(steps)]}
    }
    association.save()


def raise_alert(world, kind: str = "prevention") -> Alert:
    """An alert of a person of her own: a press while a person's alert is open joins it."""
    _person, device, _token = another_holder(world, uuid.uuid4().hex[:8])
    fix = FixIn(lat=45.76, lon=4.83, accuracy_m=12, recorded_at=NOW, source="gps", client_id=uuid.uuid4())
    alert, _ = create_alert(device, client_id=uuid.uuid4(), kind=kind, gesture="single", fixes=[fix])
    return alert


def ack(alert):
    acknowledge_alert(alert, channel="page", contact=alert.person.contacts.first())


def cancel(alert):
    cancel_alert(alert, CANCEL_PIN)


def resolve(alert):
    resolve_alert(alert, note="handled")


ACTIONS = {"ack": ack, "cancel": cancel, "resolve": resolve}


def act_and_snapshot(action, alert_id: int) -> dict:
    """Apply ACTION and, in the same transaction, note what was already in a provider's
    hands (SENDING or SENT): the only escalation messages allowed to arrive afterwards."""
    with transaction.atomic():
        action(Alert.objects.select_related("person", "association").get(pk=alert_id))
        alert = Alert.objects.get(pk=alert_id)
        escalation = Delivery.objects.filter(alert_id=alert_id, purpose="escalation")
        return {
            "step": alert.escalation_step,
            "escalation": {str(i) for i in escalation.values_list("id", flat=True)},
            "handed_over": {str(i) for i in escalation.filter(state__in=["sending", "sent"]).values_list("id", flat=True)},
            "timers": set(EscalationTimer.objects.filter(alert_id=alert_id).values_list("id", flat=True)),
            "open_timers": set(EscalationTimer.objects.filter(alert_id=alert_id, state__in=["pending", "running"])
                               .values_list("id", flat=True)),
        }


def quiet(alert_id: int) -> bool:
    return not (
        Delivery.objects.filter(alert_id=alert_id, state__in=["pending", "sending"]).exists()
        or EscalationTimer.objects.filter(alert_id=alert_id, state__in=["pending", "running"]).exists()
    )


def check_nothing_new_after(snap: dict, alert_id: int, hits) -> None:
    alert = Alert.objects.get(pk=alert_id)
    escalation = Delivery.objects.filter(alert_id=alert_id, purpose="escalation")
    assert {str(i) for i in escalation.values_list("id", flat=True)} == snap["escalation"], "escalated after"
    assert alert.escalation_step == snap["step"]
    assert set(EscalationTimer.objects.filter(alert_id=alert_id).values_list("id", flat=True)) == snap["timers"]
    for timer in EscalationTimer.objects.filter(id__in=snap["open_timers"]):
        assert timer.state == "stale", (timer.step, timer.state)
    for d in escalation:
        if str(d.id) not in snap["handed_over"]:
            assert d.state == "cancelled", (d.id, d.state)
    arrived = {h.key for h in hits if h.body.get("purpose") == "escalation" and h.body.get("alert_id") == alert_id}
    assert arrived <= snap["handed_over"], f"{len(arrived - snap['handed_over'])} escalation messages sent after"


# -- racing a live dispatcher -----------------------------------------------------------


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_nothing_escalates_after_ack_cancel_or_resolve(procs, sinks, world, action):
    fast_chain(world.association, steps=10)
    sink = sinks(lambda n, key, body: Reply(delay=0.02))  # messages spend a while with the provider
    d = procs.dispatch(BALISE_PROVIDERS="webhook", BALISE_WEBHOOK_URL=sink.url)
    # Act after the 1st, 4th and 12th escalation message reached the provider: before,
    # during and well into the chain.
    for reached in (1, 4, 12):
        alert = raise_alert(world)

        def escalation_of_this_alert(hit, alert_id=alert.pk):
            return hit.body.get("purpose") == "escalation" and hit.body.get("alert_id") == alert_id

        sink.wait_for_hits(reached, where=escalation_of_this_alert)
        snap = act_and_snapshot(ACTIONS[action], alert.pk)
        wait_until(lambda: d.check_alive() or quiet(alert.pk), 30, "the alert's work to settle")
        check_nothing_new_after(snap, alert.pk, sink.snapshot())
        if action == "cancel":
            # Whoever may have received the alert is told it was cancelled.
            reached_contacts = {h.body["to"] for h in sink.snapshot()
                                if h.body.get("alert_id") == alert.pk and h.body["purpose"] != "notice"}
            told = set(Delivery.objects.filter(alert_id=alert.pk, purpose="notice", template="cancelled",
                                               state="sent").values_list("recipient", flat=True))
            assert reached_contacts <= told, f"never told of the cancel: {reached_contacts - told}"


# -- the same races, step by step -------------------------------------------------------


def test_a_timer_due_before_the_ack_fires_stale(world):
    fast_chain(world.association, steps=2)
    alert = raise_alert(world)
    dispatcher = Dispatcher(providers=[RecordingProvider()])
    ack(alert)  # the timer is already due; the dispatcher only gets to it after the ack
    drain(dispatcher)
    assert list(EscalationTimer.objects.filter(alert=alert).values_list("state", flat=True)) == ["stale"]
    assert not Delivery.objects.filter(alert=alert, purpose="escalation").exists()
    assert {m.purpose for m in dispatcher.providers[0].sent} == {"alert"}  # the first SMS still go out


def test_an_escalation_claimed_by_a_dead_worker_is_fenced_after_the_ack(world):
    fast_chain(world.association, steps=2, after_s=600)
    alert = raise_alert(world)
    provider = RecordingProvider()
    dispatcher = Dispatcher(providers=[provider])
    EscalationTimer.objects.filter(alert=alert, state="pending").update(due_at=dj_timezone.now())
    drain(dispatcher)  # the first step escalated
    first = set(Delivery.objects.filter(alert=alert, purpose="escalation").values_list("id", flat=True))
    assert len(first) == 5
    # The second step's calls are claimed by a worker that dies before sending them.
    EscalationTimer.objects.filter(alert=alert, state="pending").update(due_at=dj_timezone.now())
    dispatcher.run_due_timers()
    second = Delivery.objects.filter(alert=alert, purpose="escalation").exclude(id__in=first)
    assert second.count() == 5
    second.update(state="sending", lease_owner="dead-worker", lease_until=dj_timezone.now() - timedelta(seconds=1),
                  attempts=1)
    ack(alert)
    drain(dispatcher)
    assert set(second.values_list("state", flat=True)) == {"cancelled"}
    sent_keys = {m.key for m in provider.sent}
    assert not sent_keys & {str(i) for i in second.values_list("id", flat=True)}


def test_cancel_cancels_unsent_messages_and_tells_only_who_was_reached(world):
    fast_chain(world.association, steps=2, after_s=600)
    alert = raise_alert(world)
    provider = RecordingProvider()
    dispatcher = Dispatcher(providers=[provider])
    first_two = list(Delivery.objects.filter(alert=alert).order_by("recipient")[:2])
    Delivery.objects.filter(alert=alert).exclude(id__in=[d.id for d in first_two]).update(
        next_attempt_at=dj_timezone.now() + timedelta(hours=1))
    drain(dispatcher)
    cancel(Alert.objects.get(pk=alert.pk))
    drain(dispatcher)
    assert Delivery.objects.filter(alert=alert, purpose="alert", state="cancelled").count() == 3
    assert set(EscalationTimer.objects.filter(alert=alert).values_list("state", flat=True)) == {"pending"}
    dispatcher.run_due_timers()  # even once due, the timer is fenced by the cancel's epoch
    EscalationTimer.objects.filter(alert=alert).update(due_at=dj_timezone.now())
    drain(dispatcher)
    assert set(EscalationTimer.objects.filter(alert=alert).values_list("state", flat=True)) == {"stale"}
    notices = [m for m in provider.sent if m.purpose == "notice"]
    assert sorted(m.to for m in notices) == sorted(d.recipient for d in first_two)


# -- the auditor -----------------------------------------------------------------------


def test_auditor_rearms_an_open_alert_whose_timer_was_lost(procs, sinks, world):
    fast_chain(world.association, steps=1)
    lost = raise_alert(world)
    EscalationTimer.objects.filter(alert=lost).delete()  # lost: whatever the path, no timer is left
    sink = sinks()
    d = procs.dispatch(BALISE_PROVIDERS="webhook", BALISE_WEBHOOK_URL=sink.url, BALISE_AUDITOR_INTERVAL_SECONDS=0.2)
    wait_until(lambda: d.check_alive() or Alert.objects.get(pk=lost.pk).escalation_step == 1 and quiet(lost.pk),
               30, "the lost escalation to run")
    assert lost.events.filter(kind="auditor_rearmed").count() == 1
    calls = Delivery.objects.filter(alert=lost, purpose="escalation", channel="voice")
    assert calls.count() == 5 and set(calls.values_list("state", flat=True)) == {"sent"}
    assert {str(i) for i in calls.values_list("id", flat=True)} <= set(sink.keys())


def test_auditor_leaves_alone_what_needs_nothing(world):
    fast_chain(world.association, steps=1, after_s=600)
    dispatcher = Dispatcher(providers=[RecordingProvider()])
    waiting = raise_alert(world)  # its timer is armed
    acked = raise_alert(world)
    EscalationTimer.objects.filter(alert=acked).delete()
    ack(acked)
    finished = raise_alert(world)
    EscalationTimer.objects.filter(alert=finished).delete()
    Alert.objects.filter(pk=finished.pk).update(escalation_step=1)  # its chain has run out
    drain(dispatcher)
    assert dispatcher.audit() == 0
    lost = raise_alert(world)
    EscalationTimer.objects.filter(alert=lost).delete()
    drain(dispatcher)
    assert dispatcher.audit() == 1
    assert dispatcher.audit() == 0  # re-armed once, not once per pass
    assert EscalationTimer.objects.filter(alert=waiting).count() == 1
    assert not EscalationTimer.objects.filter(alert__in=[acked, finished]).exists()
    assert EscalationTimer.objects.filter(alert=lost, state="pending", step=0).count() == 1
