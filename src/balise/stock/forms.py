from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from balise.devices.models import Device
from balise.stock import actions
from balise.stock.models import State

MAX_FILE = 1_000_000


class ImportForm(forms.Form):
    """A batch received: serial numbers pasted or a CSV file; every bad line is reported
    and nothing is imported until the whole list is right."""

    association = forms.TypedChoiceField(label=_("association"), coerce=int)
    programme = forms.TypedChoiceField(label=_("programme"), coerce=int, required=False, empty_value=None)
    kind = forms.ChoiceField(label=_("kind"), choices=[(k.value, k.label) for k in actions.STOCK_KINDS],
                             initial=Device.Kind.BUTTON, help_text=_("Unless a line gives another one."))
    serials = forms.CharField(label=_("serial numbers"), required=False, widget=forms.Textarea(attrs={"rows": 4}),
                              help_text=_("One per line, optionally followed by a comma and a kind."))
    file = forms.FileField(label=_("or a CSV file"), required=False)

    def __init__(self, *args, associations=(), programmes=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["association"].choices = [(a.pk, a.name) for a in associations]
        self.fields["programme"].choices = [("", _("none"))] + [(p.pk, p.name) for p in programmes]
        self.programme_associations = {p.pk: {a.pk for a in p.associations.all()} for p in programmes}
        self.lines = []

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload is None:
            return ""
        if upload.size > MAX_FILE:
            raise ValidationError(_("The file is too large (at most 1 MB)."))
        raw = upload.read()
        for encoding in ("utf-8-sig", "cp1252"):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError:
                continue
        raise ValidationError(_("The file is not a text (CSV) file."))

    def clean(self):
        data = super().clean()
        programme, association = data.get("programme"), data.get("association")
        if programme is not None and association is not None \
                and association not in self.programme_associations.get(programme, ()):
            self.add_error("programme", _("This association is not part of the programme."))
        text = "\n".join(t for t in (data.get("serials", ""), data.get("file", "")) if t)
        if "kind" in data and not self.errors:
            self.lines, errors = actions.parse(text, data["kind"])
            for error in errors[:50]:
                self.add_error(None, error)
            if len(errors) > 50:
                self.add_error(None, _("… and %(n)d more errors.") % {"n": len(errors) - 50})
        return data


class MoveForm(forms.Form):
    to_state = forms.ChoiceField(label=_("new state"), choices=[(s, State(s).label) for s in actions.MANUAL])
    note = forms.CharField(label=_("note"), max_length=200, required=False)


class AssignForm(forms.Form):
    person = forms.TypedChoiceField(label=_("hand it to"), coerce=int)

    def __init__(self, *args, people=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["person"].choices = [(p.pk, p.display_name) for p in people]
