from django import forms
from django.utils.translation import gettext_lazy as _


class AccessForm(forms.Form):
    """An access to a case's evidence: its custody record says who, when, why and under
    what legal reference, and is written before the access happens."""

    ACTIONS = (
        ("export", _("Export the signed package (zip, for the court)")),
        ("listen", _("Download the original recording (Ogg Opus)")),
        ("hold", _("Place a legal hold")),
        ("release", _("Release the legal hold")),
        ("retain", _("Retain (sealed case)")),
        ("delete", _("Ask for deletion (delayed, can be cancelled)")),
        ("cancel-deletion", _("Cancel the deletion")),
    )

    action = forms.ChoiceField(label=_("What"), choices=ACTIONS)
    reason = forms.CharField(label=_("Why"), max_length=500, widget=forms.Textarea(attrs={"rows": 3}),
                             help_text=_("Written in the custody log, which the court will read."))
    legal_reference = forms.CharField(label=_("Legal reference"), max_length=200, required=False,
                                      help_text=_("Requisition, case number, court order…"))
