"""Reading a device's JSON body safely: bounded nesting, no lone surrogates, every
refusal a BodyError naming what is wrong (never a RecursionError or a 500)."""

from __future__ import annotations

import json
import re

from ninja.parser import Parser

MAX_DEPTH = 32
# Strings (skipped whole, escapes included) or brackets: what nesting is made of.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


class BodyError(ValueError):
    def __init__(self, message: str, field: str = "body"):
        super().__init__(message)
        self.field = field


def depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in RAW, without parsing it."""
    level = deepest = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if len(token) == 1:
            if token[0] in _OPEN:
                level += 1
                deepest = max(deepest, level)
            else:
                level -= 1
    return deepest


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_strings(value) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _has_lone_surrogate(item):
                raise BodyError("the body holds an invalid \\u escape (a lone surrogate)")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(raw: bytes):
    """Parse a JSON body, or raise BodyError."""
    if depth(raw) > MAX_DEPTH:
        raise BodyError(f"the JSON body is nested more than {MAX_DEPTH} levels deep")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and too many digits are ValueErrors
        raise BodyError("the body must be JSON") from None
    _check_strings(value)
    return value


class DeviceJSONParser(Parser):
    """ninja's parser, with the checks above; a BodyError becomes a 400 naming `body`.
    Every body of the device API is an object: an array or a scalar is refused here
    (ninja would otherwise read `[null, null]` as an empty heartbeat)."""

    def parse_body(self, request):
        value = loads(request.body)
        if not isinstance(value, dict):
            raise BodyError("the body must be a JSON object")
        return value
