"""An association's alert plans edited as steps in a form its administrators understand
(never the stored JSON), checked with errors naming the plan, the step and the field,
shown in words; what the form saves is the format balise.dispatch.plans reads, and it
drives the dispatch as before."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from balise.associations.models import Association, Membership
from balise.associations.plan_form import PlanEditor
from balise.console.models import AuditEntry
from balise.devices.models import Device
from balise.dispatch.plans import DEFAULT_PLANS, DEFAULT_RAW, Send, Step, plan_for
from tests.contacts.helpers import Rig, deliveries, raise_alert
from tests.personas import staff_client

pytestmark = pytest.mark.django_db
ON_CALL = "+33472000000"


def plans_url(association) -> str:
    return reverse("admin:associations_association_plans", args=[association.pk])


def administrator(world):
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.ADMIN)
    return staff_client(world.staff)


def as_shown(association) -> dict:
    """The form's fields as the page shows them (what a click on Save sends)."""
    data = {}
    for section in PlanEditor(association).sections:
        for form in (section.mode, section.initial, *section.steps.forms):
            for field in form:
                value = field.value()
                if value is True:
                    data[field.html_name] = "on"
                elif value not in (None, False):
                    data[field.html_name] = str(value)
        data.update({f"{section.steps.prefix}-{k}": v for k, v in section.steps.management_form.initial.items()})
    return data


def custom_prevention(association, **over) -> dict:
    """The page as shown, its prevention plan replaced by: an SMS to the on-call line at
    once; after 90 s, a call to the 1st contact who accepted; then every contact by SMS,
    twice, 2 minutes apart."""
    shown = {k: v for k, v in as_shown(association).items() if not k.startswith("prevention-")}
    return {**shown, "prevention-mode": "custom", "prevention-initial-sms_on_call": "on",
            "prevention-steps-TOTAL_FORMS": "2", "prevention-steps-INITIAL_FORMS": "0",
            "prevention-steps-0-after_s": "90", "prevention-steps-0-call_to": "consenting",
            "prevention-steps-0-call_rank": "1",
            "prevention-steps-1-after_s": "120", "prevention-steps-1-sms_to": "all",
            "prevention-steps-1-repeat": "2", **over}


def test_the_plans_are_shown_in_words_and_never_as_json(world):
    admin = administrator(world)
    change = admin.get(reverse("admin:associations_association_change", args=[world.association.pk])).content.decode()
    page = admin.get(plans_url(world.association)).content.decode()
    for html in (change, page):
        assert "Quand l&#x27;alerte arrive : SMS aux proches qui ont accepté." in html
        assert ("Étape 1, après 5 min sans réponse : appel aux proches qui ont accepté, un par un, "
                "à 1 min d&#x27;intervalle.") in html
        assert "Répétée 30 fois, à 2 min d&#x27;intervalle." in html and "Le son ambiant est enregistré." in html
        text = re.sub(r"<[^>]+>", " ", html)  # what she reads
        assert not {"after_s", "channel", "on_call", "consenting", "{"} & set(text.split())
    assert 'name="alert_plans"' not in change
    assert plans_url(world.association) in change  # offered to those who may change them


def test_a_read_only_member_reads_the_plans_in_words_and_is_offered_no_change(world):
    Membership.objects.filter(user=world.staff).update(role=Membership.Role.VIEWER)
    viewer = staff_client(world.staff, second_factor=False)
    change = viewer.get(reverse("admin:associations_association_change", args=[world.association.pk]))
    assert change.status_code == 200
    assert "Quand l&#x27;alerte arrive : SMS aux proches qui ont accepté." in change.content.decode()
    assert plans_url(world.association) not in change.content.decode()
    assert viewer.get(plans_url(world.association)).status_code == 403


def test_an_administrator_saves_a_plan_as_steps_in_the_stored_format(world):
    admin = administrator(world)
    r = admin.post(plans_url(world.association), custom_prevention(world.association))
    assert r.status_code == 302, r.context and r.context["errors"]
    stored = Association.objects.get(pk=world.association.pk).alert_plans
    assert stored == {"prevention": {
        "initial": [{"channel": "sms", "audience": "on_call"}],
        "chain": [{"after_s": 90, "sends": [{"channel": "voice", "audience": "consenting", "rank": 1}]},
                  {"after_s": 120, "sends": [{"channel": "sms", "audience": "all"}], "repeat": 2}],
        "record": False}}
    assert plan_for(Association.objects.get(pk=world.association.pk), "prevention").chain == (
        Step(90, (Send("voice", "consenting", 1),)), Step(120, (Send("sms", "all"),)), Step(120, (Send("sms", "all"),)))
    page = admin.get(plans_url(world.association)).content.decode()
    assert "Étape 2, après 2 min sans réponse : SMS à tous les proches inscrits. Répétée 2 fois" in page
    assert "appel au proche n° 1 parmi ceux qui ont accepté" in page
    entry = AuditEntry.objects.get(action=AuditEntry.Action.ADMIN_CHANGE)
    assert entry.association_id == world.association.pk and "plans d'alerte" in entry.detail_text()


def test_the_defaults_saved_as_steps_are_the_defaults(world):
    """The form reads and writes the stored format without changing a plan: the default
    plans, saved as the association's own steps, are the same plans."""
    admin = administrator(world)
    data = as_shown(world.association)
    data.update({f"{kind}-mode": "custom" for kind in DEFAULT_RAW})
    assert admin.post(plans_url(world.association), data).status_code == 302
    association = Association.objects.get(pk=world.association.pk)
    assert association.alert_plans == DEFAULT_RAW
    assert {kind: plan_for(association, kind) for kind in DEFAULT_PLANS} == DEFAULT_PLANS
    # And back to the default plan: no override left.
    data.update({f"{kind}-mode": "default" for kind in DEFAULT_RAW})
    assert admin.post(plans_url(world.association), data).status_code == 302
    assert Association.objects.get(pk=world.association.pk).alert_plans == {}


@pytest.mark.parametrize("over, words", [
    ({"prevention-steps-0-after_s": "-5"},
     "Prévention — étape 1 — délai avant cette étape (secondes) — Assurez-vous que cette valeur est supérieure ou "
     "égale à 0."),
    ({"prevention-steps-1-sms_to": "", "prevention-steps-1-sms_rank": "2"},
     "Prévention — étape 2 — SMS seulement au proche n° — Choisissez d&#x27;abord quels proches."),
    ({"prevention-steps-0-one_by_one": "on", "prevention-steps-0-sms_to": "all"},
     "Prévention — étape 1 — un proche après l&#x27;autre — Un par un : choisissez les proches de l&#x27;appel ou "
     "du SMS, pas les deux."),
    ({"prevention-steps-1-sms_to": ""},
     "Prévention — étape 2 — Choisissez qui le reçoit : des proches, la permanence, ou les deux."),
    ({"prevention-initial-sms_on_call": ""},
     "Prévention — quand l&#x27;alerte arrive — Choisissez qui le reçoit : des proches, la permanence, ou les deux."),
    ({"prevention-steps-1-repeat": "1000"},
     "Prévention — étape 2 — nombre de fois — Assurez-vous que cette valeur est inférieure ou égale à 100."),
])
def test_wrong_steps_are_form_errors_naming_the_step_and_the_field(world, over, words):
    admin = administrator(world)
    r = admin.post(plans_url(world.association), custom_prevention(world.association, **over))
    assert r.status_code == 400
    assert words in r.content.decode()
    assert Association.objects.get(pk=world.association.pk).alert_plans == {}


def test_a_test_plan_never_reaches_the_contacts(world):
    admin = administrator(world)
    data = {**as_shown(world.association), "test-mode": "custom", "test-initial-sms_to": "all"}
    r = admin.post(plans_url(world.association), data)
    assert r.status_code == 400
    assert "Test — Un test ne joint que la permanence de l&#x27;association, jamais les proches." in r.content.decode()
    assert Association.objects.get(pk=world.association.pk).alert_plans == {}


def test_only_her_associations_administrators_edit_its_plans(world, other_world):
    referent = staff_client(world.staff)  # a referent follows people; plans are the administrators'
    assert referent.get(plans_url(world.association)).status_code == 403
    assert referent.post(plans_url(world.association), custom_prevention(world.association)).status_code == 403
    Membership.objects.filter(user=other_world.staff).update(role=Membership.Role.ADMIN)
    stranger = staff_client(other_world.staff)
    assert stranger.post(plans_url(world.association), custom_prevention(world.association)).status_code == 404
    assert Association.objects.get(pk=world.association.pk).alert_plans == {}


def test_a_plan_the_steps_cannot_show_is_kept_as_it_is(world):
    """Written before the form (two SMS to contacts in one step): offered as it is, kept
    when the page is saved, replaced only by choosing another plan."""
    odd = {"initial": [{"channel": "sms", "audience": "consenting", "rank": 1},
                       {"channel": "sms", "audience": "consenting", "rank": 2}]}
    Association.objects.filter(pk=world.association.pk).update(alert_plans={"emergency": odd})
    association = Association.objects.get(pk=world.association.pk)
    admin = administrator(world)
    page = admin.get(plans_url(association)).content.decode()
    assert "garder le plan actuel" in page and "SMS au proche n° 2 parmi ceux qui ont accepté" in page
    assert admin.post(plans_url(association), as_shown(association)).status_code == 302
    assert Association.objects.get(pk=world.association.pk).alert_plans == {"emergency": odd}


@pytest.mark.django_db(transaction=True)
def test_the_saved_plan_drives_the_dispatch(world):
    admin = administrator(world)
    assert admin.post(plans_url(world.association),
                      custom_prevention(world.association)).status_code == 302
    rig = Rig()
    try:
        alert = raise_alert(world, "prevention", device=Device.objects.get(pk=world.device.pk))  # (as a request reads it)
        assert [(d.channel, d.recipient) for d in deliveries(alert)] == [("sms", ON_CALL)]
        rig.drain()
        assert [(m.channel, m.to) for m in rig.sent(alert)] == [("sms", ON_CALL)]
        assert rig.fire_next_timer(alert)
        assert [(m.channel, m.to) for m in rig.sent(alert, channel="voice")] == [("voice", world.contacts[0].phone)]
        assert rig.fire_next_timer(alert) and rig.fire_next_timer(alert)
        sms = sorted(m.to for m in rig.sent(alert, channel="sms") if m.to != ON_CALL)
        assert sms == sorted([c.phone for c in world.contacts] * 2)
        assert not rig.fire_next_timer(alert)  # the chain is over
    finally:
        rig.close()
