"""An association's alert plans in a form its administrators understand, and in words.

The stored format stays the one balise.dispatch.plans reads (Association.alert_plans:
per alert kind, the sends at once and the chain of escalation steps); this module reads
it into rows and writes the rows back into it. Each row is one step: its delay, who gets
an SMS and who a call (the contacts who accepted or all of them, perhaps only the N-th;
the on-call line), or the contacts one by one; repeated or not.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.core.exceptions import ValidationError
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from balise.alerts.models import Kind
from balise.dispatch import plans
from balise.people.models import MAX_CONTACTS

# (form prefix, stored channel): calls before SMS, as the default plans list them.
CHANNELS = (("call", "voice"), ("sms", "sms"))
CONTACTS = (("", gettext_lazy("nobody")), ("consenting", gettext_lazy("the contacts who accepted")),
            ("all", gettext_lazy("every registered contact")))
DEFAULT, CUSTOM, UNCHANGED = "default", "custom", "unchanged"
MAX_DELAY_S = 86400


# -- in words ------------------------------------------------------------------------------

def duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return _("%(s)d s") % {"s": rest}
    if rest:
        return _("%(m)d min %(s)d s") % {"m": minutes, "s": rest}
    if minutes % 60 == 0:
        return _("%(h)d h") % {"h": minutes // 60}
    return _("%(m)d min") % {"m": minutes}


def _who(audience: str, rank) -> str:
    if audience == "on_call":
        return _("to the on-call line")
    if rank:
        if audience == "consenting":
            return _("to contact no. %(rank)d of those who accepted") % {"rank": rank}
        return _("to contact no. %(rank)d") % {"rank": rank}
    return _("to the contacts who accepted") if audience == "consenting" else _("to every registered contact")


def _sends(sends: list[dict]) -> str:
    if not sends:
        return _("nobody")
    return ", ".join(_("%(channel)s %(who)s") % {"channel": _("SMS") if s["channel"] == "sms" else _("phone call"),
                                                 "who": _who(s["audience"], s.get("rank"))} for s in sends)


def describe(raw: dict) -> list[str]:
    """A complete plan in the stored format (see full_plan), one sentence per step."""
    lines = [_("When the alert arrives: %(sends)s.") % {"sends": _sends(raw["initial"])}]
    for n, step in enumerate(raw["chain"], start=1):
        delay = duration(step["after_s"])
        if "one_by_one" in step:
            line = _("Step %(n)d, after %(delay)s without an answer: %(sends)s, one by one, %(wait)s apart.") % {
                "n": n, "delay": delay, "sends": _sends([step["one_by_one"]]),
                "wait": duration(step.get("wait_s", plans.ONE_BY_ONE_WAIT_S))}
            rounds = step.get("rounds", 1)
            if rounds > 1:
                line += " " + ngettext("%(n)d round.", "%(n)d rounds.", rounds) % {"n": rounds}
        else:
            line = _("Step %(n)d, after %(delay)s without an answer: %(sends)s.") % {
                "n": n, "delay": delay, "sends": _sends(step.get("sends", []))}
            times = step.get("repeat", 1)
            if times > 1:
                line += " " + _("Repeated %(times)d times, %(delay)s apart.") % {"times": times, "delay": delay}
        lines.append(line)
    if not raw["chain"]:
        lines.append(_("No escalation."))
    if raw.get("record"):
        lines.append(_("The ambient sound is recorded."))
    return lines


def full_plan(association, kind: str) -> dict:
    """The plan of KIND in the stored format, the default's parts filling what the
    association's override leaves out."""
    override = (association.alert_plans or {}).get(kind) or {}
    return {**plans.DEFAULT_RAW[kind], **override}


# -- rows <-> stored format ----------------------------------------------------------------

def sends_to_row(sends: list[dict]) -> dict | None:
    """The row fields of SENDS, or None when the form cannot show them (two sends of one
    channel to the contacts, a rank on the on-call line)."""
    row: dict = {}
    for s in sends:
        prefix = dict((channel, p) for p, channel in CHANNELS)[s["channel"]]
        if s["audience"] == "on_call":
            if s.get("rank") or row.get(f"{prefix}_on_call"):
                return None
            row[f"{prefix}_on_call"] = True
        else:
            if row.get(f"{prefix}_to"):
                return None
            row[f"{prefix}_to"], row[f"{prefix}_rank"] = s["audience"], s.get("rank")
    return row


def row_to_sends(row: dict) -> list[dict]:
    contacts = [{"channel": channel, "audience": row[f"{p}_to"], **({"rank": row[f"{p}_rank"]} if row.get(f"{p}_rank") else {})}
                for p, channel in CHANNELS if row.get(f"{p}_to")]
    return contacts + [{"channel": channel, "audience": "on_call"} for p, channel in CHANNELS if row.get(f"{p}_on_call")]


def step_to_row(step: dict) -> dict | None:
    if "one_by_one" in step:
        row = sends_to_row([step["one_by_one"]])
        if row is None or any(row.get(f"{p}_on_call") or row.get(f"{p}_rank") for p, _c in CHANNELS):
            return None
        row.update(one_by_one=True, wait_s=step.get("wait_s", plans.ONE_BY_ONE_WAIT_S), rounds=step.get("rounds", 1))
    else:
        row = sends_to_row(step.get("sends", []))
        if row is None:
            return None
        row["repeat"] = step.get("repeat", 1)
    row["after_s"] = step["after_s"]
    return row


def row_to_step(row: dict) -> dict:
    if row.get("one_by_one"):
        [send] = row_to_sends(row)
        step = {"after_s": row["after_s"], "one_by_one": send}
        if row["wait_s"] != plans.ONE_BY_ONE_WAIT_S:
            step["wait_s"] = row["wait_s"]
        if row["rounds"] > 1:
            step["rounds"] = row["rounds"]
        return step
    step = {"after_s": row["after_s"], "sends": row_to_sends(row)}
    if (row.get("repeat") or 1) > 1:
        step["repeat"] = row["repeat"]
    return step


# -- forms ---------------------------------------------------------------------------------

class SendsForm(forms.Form):
    """Who gets an SMS and who a call, at one moment of the plan."""

    call_to = forms.ChoiceField(label=gettext_lazy("phone call"), choices=CONTACTS, required=False)
    call_rank = forms.IntegerField(label=gettext_lazy("call only contact no."), min_value=1, max_value=MAX_CONTACTS,
                                   required=False)
    sms_to = forms.ChoiceField(label=gettext_lazy("SMS"), choices=CONTACTS, required=False)
    sms_rank = forms.IntegerField(label=gettext_lazy("SMS only to contact no."), min_value=1, max_value=MAX_CONTACTS,
                                  required=False)
    call_on_call = forms.BooleanField(label=gettext_lazy("call the on-call line"), required=False)
    sms_on_call = forms.BooleanField(label=gettext_lazy("SMS to the on-call line"), required=False)

    def clean(self):
        data = super().clean()
        for p, _channel in CHANNELS:
            if data.get(f"{p}_rank") and not data.get(f"{p}_to"):
                self.add_error(f"{p}_rank", _("Choose which contacts first."))
        if not row_to_sends(data) and not self.errors:
            self.add_error(None, _("Choose who receives it: contacts, the on-call line, or both."))
        return data


class StepForm(SendsForm):
    field_order = ["after_s"]  # (the delay first, then who, as a step reads)

    after_s = forms.IntegerField(label=gettext_lazy("delay before this step (seconds)"), min_value=0,
                                 max_value=MAX_DELAY_S)
    one_by_one = forms.BooleanField(label=gettext_lazy("one contact after the other"), required=False)
    wait_s = forms.IntegerField(label=gettext_lazy("wait between two contacts (seconds)"), min_value=0,
                                max_value=3600, initial=plans.ONE_BY_ONE_WAIT_S, required=False)
    rounds = forms.IntegerField(label=gettext_lazy("rounds"), min_value=1, max_value=plans.MAX_ROUNDS, initial=1,
                                required=False)
    repeat = forms.IntegerField(label=gettext_lazy("times the step is done"), min_value=1,
                                max_value=plans.MAX_REPEAT, initial=1, required=False)

    def clean(self):
        data = super().clean()
        data["wait_s"] = plans.ONE_BY_ONE_WAIT_S if data.get("wait_s") is None else data["wait_s"]
        data["rounds"], data["repeat"] = data.get("rounds") or 1, data.get("repeat") or 1
        if data.get("one_by_one"):
            if sum(bool(data.get(f"{p}_to")) for p, _c in CHANNELS) != 1:
                self.add_error("one_by_one", _("One by one: choose contacts for the call or for the SMS, not both."))
            for p, _c in CHANNELS:
                if data.get(f"{p}_rank"):
                    self.add_error(f"{p}_rank", _("One by one reaches every contact in turn: leave it empty."))
                if data.get(f"{p}_on_call"):
                    self.add_error(f"{p}_on_call", _("One by one is for contacts: give the on-call line a step "
                                                     "of its own."))
            if data["repeat"] > 1:
                self.add_error("repeat", _("One by one is repeated by its rounds: leave 1 here."))
        return data


StepFormSet = forms.formset_factory(StepForm, extra=2, can_order=True, can_delete=True,
                                    max_num=plans.MAX_CHAIN, validate_max=True)


class ModeForm(forms.Form):
    mode = forms.ChoiceField(label=gettext_lazy("plan"), widget=forms.RadioSelect)
    record = forms.BooleanField(label=gettext_lazy("record the ambient sound (evidence)"), required=False)

    def __init__(self, *args, unchanged: bool, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(DEFAULT, _("the default plan")), (CUSTOM, _("the steps below"))]
        if unchanged:
            choices.append((UNCHANGED, _("keep the current plan (written before this form; it cannot be shown "
                                         "in it)")))
        self.fields["mode"].choices = choices


@dataclass
class Section:
    kind: str
    label: str
    words: list[str]
    mode: ModeForm
    initial: SendsForm
    steps: forms.BaseFormSet

    def rows(self) -> dict:
        """The plan of the form's rows, in the stored format (once valid)."""
        chain = [row_to_step(f.cleaned_data) for f in self.steps.ordered_forms]
        return {"initial": row_to_sends(self.initial.cleaned_data), "chain": chain,
                "record": self.mode.cleaned_data["record"]}


class PlanEditor:
    """One section per alert kind: the default plan or the association's own steps."""

    def __init__(self, association, data=None):
        self.association = association
        self.sections = []
        stored = association.alert_plans or {}
        for kind, label in Kind.choices:
            raw = full_plan(association, kind)
            rows = [step_to_row(s) for s in raw["chain"]]
            initial = sends_to_row(raw["initial"])
            shown = initial is not None and None not in rows
            mode = CUSTOM if kind in stored else DEFAULT
            if not shown:  # (a stored plan the rows cannot show: offered as it is, rows left empty)
                mode, initial, rows = UNCHANGED, {}, []
            self.sections.append(Section(
                kind, capfirst(label), describe(raw),
                ModeForm(data, prefix=kind, unchanged=not shown, initial={"mode": mode, "record": raw["record"]}),
                SendsForm(data, prefix=f"{kind}-initial", initial=initial),
                StepFormSet(data, prefix=f"{kind}-steps", initial=rows)))

    def is_valid(self) -> bool:
        valid = True
        for section in self.sections:
            if not section.mode.is_valid():
                valid = False
                continue
            if section.mode.cleaned_data["mode"] != CUSTOM:
                continue
            if not (section.initial.is_valid() & section.steps.is_valid()):
                valid = False
                continue
            try:
                plans.validate_plan(section.kind, section.rows())
            except ValidationError as exc:
                section.mode.add_error(None, exc)
                valid = False
        return valid

    def plans(self) -> dict:
        """The association's overrides, in the stored format."""
        stored = self.association.alert_plans or {}
        out = {}
        for section in self.sections:
            mode = section.mode.cleaned_data["mode"]
            if mode == CUSTOM:
                out[section.kind] = section.rows()
            elif mode == UNCHANGED and section.kind in stored:
                out[section.kind] = stored[section.kind]
        return out

    def errors(self) -> list[str]:
        """Every error in one sentence naming its plan, its step and its field."""
        found = []

        def add(section, where: str, form: forms.Form):
            for field, messages in form.errors.items():
                name = form.fields[field].label if field in form.fields else ""
                for message in messages:
                    found.append(" — ".join(str(p) for p in (section.label, where, name, message) if p))

        for section in self.sections:
            add(section, "", section.mode)
            if section.mode.is_bound and section.mode.is_valid() and section.mode.cleaned_data["mode"] == CUSTOM:
                add(section, _("when the alert arrives"), section.initial)
                for n, form in enumerate(section.steps.forms, start=1):
                    if not getattr(form, "cleaned_data", {}).get("DELETE"):
                        add(section, _("step %(n)d") % {"n": n}, form)
                found += [f"{section.label} — {message}" for message in section.steps.non_form_errors()]
        return found
