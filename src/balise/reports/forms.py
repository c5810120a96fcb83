from django import forms
from django.utils.translation import gettext_lazy as _


class ReportForm(forms.Form):
    programme = forms.ChoiceField(label=_("programme"), required=False)
    start = forms.DateField(label=_("period start"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("period end"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, programmes=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["programme"].choices = [("", _("every programme"))] + [(p.slug, p.name) for p in programmes]

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", _("The end of the period comes before its start."))
        return data
