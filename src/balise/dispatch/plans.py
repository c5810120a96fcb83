"""What an alert sends, to whom, and how it escalates: one plan per alert kind.

A plan has initial sends (written with the alert, in its transaction) and a chain of
escalation steps, each run by a timer row once its delay has passed with nobody having
acknowledged. Associations may override the plan of any kind (Association.alert_plans).

A send may target one member of its audience by rank (the 1st, 2nd... contact of the
audience, in the person's order): that is how contacts are called "one by one". A step
whose sends reach nobody (no 4th contact, no on-call number) is skipped at once, without
waiting its delay again: the chain is the same for every person, whatever her number of
contacts.

Overrides are JSON, per kind::

    {"initial": [{"channel": "sms", "audience": "consenting"}],
     "chain": [
        {"after_s": 300, "sends": [{"channel": "voice", "audience": "consenting", "rank": 1}]},
        {"after_s": 300, "one_by_one": {"channel": "voice", "audience": "consenting"},
         "wait_s": 60, "rounds": 2},
        {"after_s": 120, "sends": [{"channel": "voice", "audience": "all"}], "repeat": 10}
     ],
     "record": false}

The default plans are written in the same format (DEFAULT_RAW); the back-office edits
an association's overrides as steps (balise.associations.plan_form), never as JSON.

"one_by_one" expands to one step per contact rank (the first after `after_s`, the others
`wait_s` apart), `rounds` times; "repeat" repeats a step `repeat` times, `after_s` apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from balise.people.models import MAX_CONTACTS

CHANNELS = ("sms", "voice")
# consenting: contacts who accepted; all: every registered contact; on_call: the
# association's on-call line.
AUDIENCES = ("consenting", "all", "on_call")
# How long a one-by-one call waits for "press 1" before the next contact is called.
ONE_BY_ONE_WAIT_S = 60
MAX_ROUNDS = 10
MAX_REPEAT = 100
MAX_CHAIN = 200


@dataclass(frozen=True)
class Send:
    channel: str
    audience: str
    # None: every member of the audience; N: only its N-th member (1-based).
    rank: int | None = None


@dataclass(frozen=True)
class Step:
    after_s: int
    sends: tuple[Send, ...]


@dataclass(frozen=True)
class Plan:
    initial: tuple[Send, ...]
    chain: tuple[Step, ...] = ()
    record: bool = False


def one_by_one(channel: str, audience: str, *, after_s: int, wait_s: int = ONE_BY_ONE_WAIT_S,
               rounds: int = 1) -> tuple[Step, ...]:
    """One step per contact rank, 1..5, ROUNDS times."""
    steps: list[Step] = []
    for _round in range(rounds):
        for rank in range(1, MAX_CONTACTS + 1):
            steps.append(Step(after_s if not steps else wait_s, (Send(channel, audience, rank),)))
    return tuple(steps)


def repeat(step: Step, times: int) -> tuple[Step, ...]:
    return (step,) * times


def _send(channel: str, audience: str, rank: int | None = None) -> dict:
    return {"channel": channel, "audience": audience, **({"rank": rank} if rank else {})}


ON_CALL = [_send("voice", "on_call"), _send("sms", "on_call")]

# The default plans, in the stored format of an association's override (the back-office
# form shows them as the starting point of one).
DEFAULT_RAW: dict[str, dict] = {
    # SMS to every consenting contact; nobody acknowledged after 5 min: call them one by
    # one; then the association's on-call line.
    "prevention": {
        "initial": [_send("sms", "consenting")],
        "chain": [{"after_s": 300, "one_by_one": _send("voice", "consenting")},
                  {"after_s": ONE_BY_ONE_WAIT_S, "sends": ON_CALL}],
        "record": False,
    },
    # Calls one by one until someone presses 1, up to 3 rounds (the first from the 2nd
    # contact: the 1st is called at once), then the on-call line. Every consenting contact
    # also gets the SMS with the live map at once.
    "emergency": {
        "initial": [_send("voice", "consenting", 1), _send("sms", "consenting")],
        "chain": [*({"after_s": ONE_BY_ONE_WAIT_S, "sends": [_send("voice", "consenting", rank)]}
                    for rank in range(2, MAX_CONTACTS + 1)),
                  {"after_s": ONE_BY_ONE_WAIT_S, "one_by_one": _send("voice", "consenting"), "rounds": 2},
                  {"after_s": ONE_BY_ONE_WAIT_S, "sends": ON_CALL}],
        "record": False,
    },
    # Everyone at once, the on-call line from the start (called, and sent the SMS with the
    # live map that its call refers to), calls repeated every 2 minutes until someone
    # presses 1 (for an hour at most: by then staff are on it).
    "alarm": {
        "initial": [_send("voice", "all"), _send("sms", "all"), *ON_CALL],
        "chain": [{"after_s": 120, "sends": [_send("voice", "all"), _send("voice", "on_call")], "repeat": 30}],
        "record": True,
    },
    # A test goes through the whole chain but reaches only the association.
    "test": {"initial": [_send("sms", "on_call")], "chain": [], "record": False},
}

# Sent at once when the cancel code was typed under duress: everybody, by every channel,
# except calls to contacts whose last answer is one of DURESS_QUIET_ANSWERS (they already
# called the police: the duress SMS asks them to confirm, the association calls for them);
# the same holds for every later step of the chain (balise.dispatch.outbox.not_to_call).
DURESS_QUIET_ANSWERS = ("called_police",)
DURESS_STEP = Step(0, (Send("voice", "all"), Send("sms", "all"), Send("voice", "on_call"), Send("sms", "on_call")))


def _int(raw: dict, key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(
            _("%(key)s must be a whole number from %(low)d to %(high)d."), params={"key": key, "low": low, "high": high}
        )
    return value


def _parse_send(raw) -> Send:
    if not isinstance(raw, dict) or raw.get("channel") not in CHANNELS or raw.get("audience") not in AUDIENCES:
        raise ValidationError(_("Each send needs a channel (sms, voice) and an audience (consenting, all, on_call)."))
    rank = None
    if raw.get("rank") is not None:
        rank = _int(raw, "rank", 1, 1, MAX_CONTACTS)
    return Send(raw["channel"], raw["audience"], rank)


def _parse_step(raw) -> tuple[Step, ...]:
    if not isinstance(raw, dict):
        raise ValidationError(_("Each escalation step must be an object."))
    after = raw.get("after_s")
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValidationError(_("Each escalation step needs a delay after_s in seconds."))
    if "one_by_one" in raw:
        send = _parse_send(raw["one_by_one"])
        return one_by_one(send.channel, send.audience, after_s=after,
                          wait_s=_int(raw, "wait_s", ONE_BY_ONE_WAIT_S, 0, 3600),
                          rounds=_int(raw, "rounds", 1, 1, MAX_ROUNDS))
    sends = raw.get("sends", [])
    if not isinstance(sends, list):
        raise ValidationError(_("The sends of a step must be a list."))
    return repeat(Step(after, tuple(_parse_send(s) for s in sends)), _int(raw, "repeat", 1, 1, MAX_REPEAT))


def parse_plan(raw: dict, base: Plan) -> Plan:
    """Build a plan from an association's JSON override, keeping BASE for missing parts."""
    if not isinstance(raw, dict):
        raise ValidationError(_("A plan must be an object."))
    initial = base.initial
    if "initial" in raw:
        if not isinstance(raw["initial"], list):
            raise ValidationError(_("The initial sends must be a list."))
        initial = tuple(_parse_send(s) for s in raw["initial"])
    chain = base.chain
    if "chain" in raw:
        if not isinstance(raw["chain"], list):
            raise ValidationError(_("The escalation chain must be a list of steps."))
        chain = tuple(step for item in raw["chain"] for step in _parse_step(item))
        if len(chain) > MAX_CHAIN:
            raise ValidationError(_("An escalation chain has at most %(max)d steps."), params={"max": MAX_CHAIN})
    return Plan(initial=initial, chain=chain, record=bool(raw.get("record", base.record)))


DEFAULT_PLANS: dict[str, Plan] = {kind: parse_plan(raw, Plan(initial=())) for kind, raw in DEFAULT_RAW.items()}


def plan_for(association, kind: str) -> Plan:
    base = DEFAULT_PLANS[kind]
    override = (association.alert_plans or {}).get(kind)
    return parse_plan(override, base) if override else base


def validate_plan(kind: str, raw: dict) -> Plan:
    """The plan of KIND an association's override makes (ValidationError if it is wrong)."""
    plan = parse_plan(raw, DEFAULT_PLANS[kind])
    if kind == "test":
        sends = [*plan.initial, *(send for step in plan.chain for send in step.sends)]
        if any(send.audience != "on_call" for send in sends):
            raise ValidationError(_("A test reaches only the association's on-call line, never the contacts."))
    return plan


def validate_plans(value: dict) -> None:
    if not isinstance(value, dict):
        raise ValidationError(_("Alert plans must be an object keyed by alert kind."))
    for kind, raw in value.items():
        if kind not in DEFAULT_PLANS:
            raise ValidationError(_("Unknown alert kind: %(kind)s"), params={"kind": kind})
        validate_plan(kind, raw)
