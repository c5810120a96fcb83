"""A date typed as the page's language writes it: jj/mm/aaaa in French, mm/dd/yyyy in
English, the way the pages print dates (SHORT_DATE_FORMAT).

Not `<input type="date">`: a browser draws it in its own interface language, not the
page's (an English Chromium shows mm/dd/yyyy on a French page), and it cannot show a
value written the French way (the field then looks empty)."""

from __future__ import annotations

import datetime

from django import forms
from django.core.exceptions import ValidationError
from django.utils import formats
from django.utils.translation import gettext as _


def date_pattern() -> str:
    """The active language's short date format as she types it: "jj/mm/aaaa" in French."""
    letters = {"d": _("dd"), "j": _("dd"), "m": _("mm"), "n": _("mm"), "Y": _("yyyy"), "y": _("yy")}
    return "".join(letters.get(c, c) for c in formats.get_format("SHORT_DATE_FORMAT"))


class LocalDateInput(forms.DateInput):
    input_type = "text"

    def __init__(self, attrs=None):
        super().__init__({"inputmode": "numeric", "autocomplete": "off", "size": 10, **(attrs or {})})

    def format_value(self, value):
        if isinstance(value, datetime.date):
            return formats.date_format(value, "SHORT_DATE_FORMAT")
        return value  # what she typed, shown back as typed next to its error

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["attrs"].setdefault("placeholder", date_pattern())  # in the language of the request
        return context


class LocalDateField(forms.DateField):
    """Parsed with the active language's input formats (fr: day first; en: month first),
    ISO 8601 accepted in both; a date that does not parse is a form error."""

    widget = LocalDateInput

    def to_python(self, value):
        try:
            return super().to_python(value)
        except ValidationError as exc:
            raise ValidationError(_("Type the date as %(pattern)s.") % {"pattern": date_pattern()},
                                  code="invalid") from exc
