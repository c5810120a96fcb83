from django import forms
from django.utils.translation import gettext_lazy as _

from balise.closure.models import Reason


class CloseForm(forms.Form):
    reason = forms.ChoiceField(label=_("why her protection ends"), choices=Reason.choices)


class RetentionForm(forms.Form):
    association = forms.TypedChoiceField(label=_("association"), coerce=int)
    days = forms.IntegerField(label=_("days kept after closing"), min_value=1, max_value=3650,
                              help_text=_("Then her name, codes, contacts, positions and notes are erased; "
                                          "anonymous figures stay."))

    def __init__(self, *args, associations=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["association"].choices = [(a.pk, a.name) for a in associations]
