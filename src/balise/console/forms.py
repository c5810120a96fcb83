"""Forms of the console: each field's error is shown next to it, in French first."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from balise.datefield import LocalDateField
from balise.devices.models import Device
from balise.people.models import Language
from balise.people.phones import normalize_phone, phone_end

pin_validator = RegexValidator(r"^\d{4,8}$", _("A code is 4 to 8 digits."))


class PinsForm(forms.Form):
    cancel_pin = forms.CharField(label=_("Cancel code"), validators=[pin_validator],
                                 widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "off"}))
    duress_pin = forms.CharField(label=_("Duress code"), validators=[pin_validator],
                                 widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
                                 help_text=_("Typed under threat: looks like a cancel, but alerts everyone."))

    def clean(self):
        data = super().clean()
        if data.get("cancel_pin") and data.get("cancel_pin") == data.get("duress_pin"):
            raise ValidationError(_("The duress code must differ from the cancel code."))
        return data


class PersonForm(forms.Form):
    display_name = forms.CharField(label=_("display name"), max_length=60)
    language = forms.ChoiceField(label=_("language"), choices=Language.choices)
    starts_on = LocalDateField(label=_("protection starts"), required=False)
    ends_on = LocalDateField(label=_("protection ends"), required=False)

    def clean(self):
        data = super().clean()
        if data.get("starts_on") and data.get("ends_on") and data["ends_on"] < data["starts_on"]:
            self.add_error("ends_on", _("The protection cannot end before it starts."))
        return data


class ContactForm(forms.Form):
    name = forms.CharField(label=_("name"), max_length=80)
    phone = forms.CharField(label=_("phone"), max_length=20)
    language = forms.ChoiceField(label=_("language"), choices=Language.choices)

    def clean_phone(self):
        return normalize_phone(self.cleaned_data["phone"])


class EnrolForm(PersonForm, PinsForm):
    """A new person in one form: her name, codes, protection and her first contact."""

    contact_name = forms.CharField(label=_("first contact's name"), max_length=80, required=False)
    contact_phone = forms.CharField(label=_("first contact's phone"), max_length=20, required=False)
    association = forms.TypedChoiceField(label=_("association"), coerce=int)

    field_order = ["association", "display_name", "language", "starts_on", "ends_on", "cancel_pin", "duress_pin",
                   "contact_name", "contact_phone"]  # her name first, as on her file

    def __init__(self, *args, associations=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["association"].choices = [(a.pk, a.name) for a in associations]
        if len(self.fields["association"].choices) == 1:
            self.fields["association"].initial = self.fields["association"].choices[0][0]

    def clean_contact_phone(self):
        phone = self.cleaned_data.get("contact_phone", "")
        return normalize_phone(phone) if phone else ""

    def clean(self):
        data = super().clean()
        if bool(data.get("contact_name")) != bool(data.get("contact_phone")):
            self.add_error("contact_phone", _("Give both the name and the phone of the contact, or neither."))
        return data


class TestsForm(forms.Form):
    """Her periodic tests: how often she is reminded, and the phone the reminder goes to.

    Her number is write-only here: the reminders are sent by the server and nobody in the
    console calls her on it (her aggressor may hold that phone), so the page shows its
    last two digits only; a new number replaces it, "remove" clears it."""

    period_days = forms.IntegerField(
        label=_("test reminder every (days)"), required=False, min_value=0, max_value=365,
        help_text=_("Empty: the association's default. 0: no reminder and no overdue alarm."))
    phone = forms.CharField(
        label=_("her phone, for test reminders"), max_length=20, required=False,
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off"}),
        help_text=_("A discreet SMS that says nothing of Balise. Empty: no reminder is sent."))
    remove_phone = forms.BooleanField(label=_("remove her number"), required=False,
                                      help_text=_("No reminder is sent any more."))

    def __init__(self, *args, current_phone: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.current_phone = current_phone
        if current_phone:
            end = phone_end(current_phone)
            self.fields["phone"].widget.attrs["placeholder"] = f"•• •• •• •• {end}"
            self.fields["phone"].help_text = _(
                "Her number ends in %(end)s. Type a new one to replace it; empty keeps it.") % {"end": end}
        else:
            del self.fields["remove_phone"]

    def clean_phone(self):
        phone = self.cleaned_data.get("phone", "").strip()
        return normalize_phone(phone) if phone else ""

    def clean(self):
        data = super().clean()
        if data.pop("remove_phone", False):
            data["phone"] = ""
        elif "phone" in data and not data["phone"]:
            data["phone"] = self.current_phone
        return data


class NoteForm(forms.Form):
    text = forms.CharField(label=_("note"), max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))


class PairForm(forms.Form):
    """A new device for her, paired by a one-time code."""

    kind = forms.ChoiceField(label=_("kind"), choices=Device.Kind.choices, initial=Device.Kind.STATION)
    hardware_id = forms.CharField(label=_("hardware id"), max_length=64,
                                  help_text=_("Printed on the device (serial number)."))

    def clean_hardware_id(self):
        value = self.cleaned_data["hardware_id"].strip()
        if Device.objects.filter(hardware_id=value).exists():
            raise ValidationError(_("A device with this hardware id is already registered."))
        return value
