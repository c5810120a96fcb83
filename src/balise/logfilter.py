"""Keeps secrets out of the log: a filter on every handler (settings.LOGGING) that masks,
in the message, its arguments and any traceback, before anything is written:

- the tokens of contact links and calls in paths: /a/<token>, /c/<token>, /s/<token>,
  /inbound/voice/<token>, /inbound/status/<token>, /integrations/flic/p/<key> (Django logs the path of a 404, 405 or CSRF failure; uvicorn's
  access log, the request line);
- token=, key=, signature=, secret=, pin= in query strings; Bearer credentials; device
  tokens (bal_...) and Flic private-link keys (flp_...); "token"/"code"/"key"/"pin" values
  written as JSON or Python mappings (a pairing code in a request body);
- phone numbers: international (+33612345678, +33 6 12 34 56 78, 0033..., %2B...) and French
  national formats (06 12 34 56 78, 06.12.34.56.78, 0612345678).

The module is named so as not to shadow the standard library's `logging`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

MASK = "***"
PHONE_MASK = "[phone]"

_SECRETS = [
    (re.compile(r"(/(?:a|c|s|inbound/voice|inbound/status|integrations/flic/p)/)[^/\s?#\"'<>]+"), rf"\g<1>{MASK}"),
    (re.compile(r"(\b(?:token|access_token|key|signature|sig|secret|pin)=)[^&\s\"'<>]+", re.I), rf"\g<1>{MASK}"),
    (re.compile(r"(\bBearer\s+)[^\s\"',;]+", re.I), rf"\g<1>{MASK}"),
    # credentials as JSON or Python keys: {"token": "..."}, {'code': '...'} (pairing codes)
    (re.compile(r"""((["'])(?:token|code|key|pin|secret|password)\2\s*:\s*(["']))[^"']*(?=\3)""", re.I),
     rf"\g<1>{MASK}"),
    (re.compile(r"\bbal_[A-Za-z0-9_\-]+"), f"bal_{MASK}"),
    (re.compile(r"\bflp_[A-Za-z0-9_\-]+"), f"flp_{MASK}"),
    # 06 12 34 56 78, 06.12.34.56.78, 0612345678 (first: an international number written
    # right before one of these must not swallow its first digits)
    (re.compile(r"(?<![\w.,+\-])0[1-9](?:[ .\-]?\d\d){4}(?!\d)"), PHONE_MASK),
    # +33612345678, +33 6 12 34 56 78, +1-202-555-0123, 0033 6 12 34 56 78, %2B33612345678
    (re.compile(r"(?<![\w+])(?:\+|%2B|00)\d(?:[ .\-]?\d){7,14}(?!\d)"), PHONE_MASK),
]
_traceback_formatter = logging.Formatter()


def mask(text: str) -> str:
    """TEXT with every token and phone number replaced."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _mask_arg(value):
    if value is None or isinstance(value, (bool, int, float)):
        return value  # kept as they are, for %d and %f
    text = value if isinstance(value, str) else str(value)
    masked = mask(text)
    return masked if isinstance(value, str) or masked != text else value


class MaskSecrets(logging.Filter):
    """Rewrites the record in place; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.msg if isinstance(record.msg, str) else str(record.msg))
        if isinstance(record.args, Mapping):
            record.args = {k: _mask_arg(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_mask_arg(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            # Formatters print exc_text when it is set: the traceback is masked once here.
            record.exc_text = _traceback_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True
