from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from balise.dispatch.messages import septets, to_gsm7


class PreventionTextForm(forms.Form):
    """Her own words for the prevention SMS, within ROOM septets: what one SMS part leaves
    once Balise has added her name, the link and what to do (own_words_room)."""

    prevention_text = forms.CharField(
        label=_("My prevention message"), required=False, max_length=400,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Sent to your contacts when you press once, followed by your position and the link to the "
                    "live map, in one text message. Empty: Balise's own words."),
    )

    def __init__(self, *args, room: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.room = room

    def clean_prevention_text(self):
        text = " ".join(self.cleaned_data["prevention_text"].split())
        used = septets(to_gsm7(text))
        if used > self.room:
            raise forms.ValidationError(
                _("Too long for one text message: %(used)d characters, %(max)d at most."),
                params={"used": used, "max": self.room}, code="too_long")
        return text


class PinForm(forms.Form):
    pin = forms.CharField(label=_("My code"), max_length=12,
                          widget=forms.PasswordInput(attrs={"inputmode": "numeric", "autocomplete": "off"}))


class CheckInForm(forms.Form):
    due_time = forms.TimeField(label=_("If I have not confirmed by"), widget=forms.TimeInput(attrs={"type": "time"}))
