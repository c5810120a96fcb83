from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from balise.dispatch.messages import to_gsm7

# One SMS part: 160 GSM-7 septets; the extension table's characters take two.
SMS_PART_SEPTETS = 160
_EXTENDED = set("^{}\\[~]|€")


def septets(text: str) -> int:
    return sum(2 if ch in _EXTENDED else 1 for ch in to_gsm7(text))


class PreventionTextForm(forms.Form):
    prevention_text = forms.CharField(
        label=_("My prevention message"), required=False, max_length=400,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Sent to your contacts when you press once, followed by your position and the link to the "
                    "live map. One text message: 160 characters at most. Empty: Balise's own words."),
    )

    def clean_prevention_text(self):
        text = " ".join(self.cleaned_data["prevention_text"].split())
        used = septets(text)
        if used > SMS_PART_SEPTETS:
            raise forms.ValidationError(
                _("Too long for one text message: %(used)d characters, %(max)d at most."),
                params={"used": used, "max": SMS_PART_SEPTETS}, code="too_long")
        return text


class PinForm(forms.Form):
    pin = forms.CharField(label=_("My code"), max_length=12,
                          widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "off"}))


class CheckInForm(forms.Form):
    due_time = forms.TimeField(label=_("If I have not confirmed by"), widget=forms.TimeInput(attrs={"type": "time"}))
