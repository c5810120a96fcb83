"""Phone numbers: parsed and validated with phonenumbers, stored in E.164."""

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

DEFAULT_REGION = "FR"


def normalize_phone(value: str, region: str = DEFAULT_REGION) -> str:
    """Return VALUE in E.164, or raise ValidationError."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(_("Enter a valid phone number, for example +33 6 12 34 56 78."), code="invalid_phone")
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(_("Enter a valid phone number, for example +33 6 12 34 56 78."), code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_phone(value: str) -> None:
    if value and normalize_phone(value) != value:
        raise ValidationError(_("Phone numbers are stored in international form, for example +33612345678."), code="not_e164")


def readable_phone(value: str, region: str = DEFAULT_REGION) -> str:
    """An E.164 number as a reader in REGION dials it (+33472000000: 04 72 00 00 00); a
    number from elsewhere in international form; anything unparsable as it is."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return value
    style = (phonenumbers.PhoneNumberFormat.NATIONAL if phonenumbers.region_code_for_number(number) == region
             else phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return phonenumbers.format_number(number, style)


def phone_end(value: str) -> str:
    """The last two digits, all a page shows of a number it must not show in full."""
    return value[-2:]
