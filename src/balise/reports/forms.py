from django import forms
from django.utils.translation import gettext_lazy as _

from balise.datefield import LocalDateField


class ReportForm(forms.Form):
    programme = forms.ChoiceField(label=_("programme"), required=False)
    start = LocalDateField(label=_("period start"), required=False)
    end = LocalDateField(label=_("period end"), required=False)

    def __init__(self, *args, programmes=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["programme"].choices = [("", _("every programme"))] + [(p.slug, p.name) for p in programmes]

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", _("The end of the period comes before its start."))
        return data
