"""The words of every SMS and voice message, rendered at send time in the recipient's
language, from the alert's latest location fix."""

from __future__ import annotations

import math
import unicodedata

from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

# What the apps above dispatch provide, set in their AppConfig.ready() (dispatch imports
# nothing from them): the nearest place of a position, (lat, lon, wait) -> a place with
# .label() and .name, or None (balise.tracking.places.nearest); a new short link to a
# contact's live page of an alert, (alert, contact id) -> URL; and new links for a batch
# of messages in one statement, [(alert id, contact id), ...] -> [URL, ...]
# (balise.tracking.shortlinks.short_url and mint).
place_finder = None
link_maker = None
links_preparer = None


def nearest(lat, lon, wait: float = 0.0):
    finder = place_finder
    return finder(lat, lon, wait=wait) if finder is not None else None


# The templates whose SMS carry the short link of the contact's live page.
LINKED_TEMPLATES = frozenset({"alert", "duress", "ack", "reply_unclear"})


def prepare_links(rows) -> None:
    """Give the deliveries ROWS whose words carry a short link, and have none yet, a link
    each (Delivery.page_link), made in one statement; render uses it."""
    todo = [d for d in rows if d.alert_id and d.channel == "sms" and d.template in LINKED_TEMPLATES
            and not d.page_link]
    if links_preparer is not None and todo:
        for d, url in zip(todo, links_preparer([(d.alert_id, d.contact_id) for d in todo])):
            d.page_link = url


def short_url(alert, contact_id) -> str:
    if link_maker is None:
        raise RuntimeError("no link maker registered: balise.tracking is not installed")
    return link_maker(alert, contact_id)

# GSM 03.38 basic set plus its extension table: characters an SMS can carry without
# falling back to UCS-2 (which cuts a message part from 160 to 70 characters).
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ ÆæßÉ!\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà" "^{}\\[~]|€"
)
_REPLACEMENTS = {"’": "'", "‘": "'", "“": '"', "”": '"', "«": '"', "»": '"', "–": "-", "—": "-", "…": "...", "±": "+/-", "\u00a0": " ", "\u202f": " "}


def to_gsm7(text: str) -> str:
    """Replace characters outside GSM-7 by their closest GSM-7 spelling (ê -> e)."""
    out = []
    for ch in text:
        if ch in GSM7:
            out.append(ch)
            continue
        if ch in _REPLACEMENTS:
            out.append(_REPLACEMENTS[ch])
            continue
        base = unicodedata.normalize("NFD", ch)[0]
        out.append(base if base in GSM7 else "?")
    return "".join(out)


def kind_words(kind: str) -> str:
    return {
        "prevention": _("feels in danger (prevention alert)"),
        "emergency": _("is in grave danger (emergency alert)"),
        "alarm": _("is in grave danger: her alarm has gone off"),
        "test": _("is testing her button (test, no action needed)"),
    }[kind]


def _near(fix) -> str:
    """", near Lyon 2e (Rhône)": the nearest locality, when it is known at once."""
    place = nearest(fix.lat, fix.lon)
    return _(", near %(place)s") % {"place": place.label()} if place else ""


def _clock(fix) -> str:
    """"18:05" in local time, or words saying the time is unknown when the device sent a
    time that cannot be shown (year 9999 becomes year 10000 in local time)."""
    try:
        return formats.time_format(timezone.localtime(fix.recorded_at), "H:i")
    except (OverflowError, ValueError, TypeError, AttributeError):
        return _("an unknown time")


def _usable(fix) -> bool:
    """Whether FIX has coordinates that can be shown: finite, on the globe."""
    try:
        return math.isfinite(fix.lat) and math.isfinite(fix.lon) and abs(fix.lat) <= 90 and abs(fix.lon) <= 180
    except TypeError:
        return False


def _accuracy(fix) -> int | None:
    """The accuracy in whole metres, or None when missing or out of range."""
    acc = fix.accuracy_m
    if isinstance(acc, (int, float)) and math.isfinite(acc) and 0 <= acc < 1e7:
        return round(acc)
    return None


def _where(fix) -> str:
    if fix is None or not _usable(fix):
        return _("Position not known yet.")
    when = _clock(fix)
    near = _near(fix)
    acc = _accuracy(fix)
    if acc is not None:
        return _("Position %(lat).5f, %(lon).5f within %(acc)d m at %(time)s%(near)s.") % {
            "lat": fix.lat, "lon": fix.lon, "acc": acc, "time": when, "near": near,
        }
    return _("Position %(lat).5f, %(lon).5f at %(time)s%(near)s.") % {
        "lat": fix.lat, "lon": fix.lon, "time": when, "near": near,
    }


def _where_spoken(fix, wait: float = 0.0) -> str:
    """The location as a voice reads it: the nearest place first (digits alone help
    nobody on the phone), then the coordinates for whoever writes them down."""
    if fix is None or not _usable(fix):
        return _("Her position is not known yet.")
    values = {"time": _clock(fix), "lat": f"{fix.lat:.5f}", "lon": f"{fix.lon:.5f}"}
    place = nearest(fix.lat, fix.lon, wait=wait)
    if place is None:
        return _("At %(time)s she was at latitude %(lat)s, longitude %(lon)s. The map is in the text message.") % values
    values["place"] = place.label()
    acc = _accuracy(fix)
    if acc is not None:
        values["acc"] = acc
        return _("At %(time)s she was near %(place)s, within %(acc)d metres: latitude %(lat)s, longitude %(lon)s. "
                 "The map is in the text message.") % values
    return _("At %(time)s she was near %(place)s: latitude %(lat)s, longitude %(lon)s. "
             "The map is in the text message.") % values


def answer_words(answer: str) -> str:
    return {
        "on_my_way": _("is on the way"),
        "called_police": _("called the police"),
        "cannot_help": _("cannot help"),
        "acknowledged": _("is on it"),
    }.get(answer, _("is on it"))


def responder_name(ack) -> str:
    if ack.contact_id is not None:
        return ack.contact.name
    if ack.staff_id is not None:
        return _("Her association")
    return _("The association's on-call line")


def voice_parts(alert, fix, wait: float = 0.0) -> tuple[str, str, str]:
    """(intro, location, prompt) of a call: the intro is what her own recording replaces."""
    name = alert.person.display_name
    if alert.duress:
        intro = _("Balise alert. %(name)s is in grave danger: her alert was cancelled under duress. Do not call her.") % {"name": name}
    else:
        intro = _("Balise alert. %(name)s %(what)s.") % {"name": name, "what": kind_words(alert.kind)}
    prompt = _("Call 17 or 112. Press 1 if you are going, 2 if you called the police, 3 if you cannot help.")
    return intro, _where_spoken(fix, wait), prompt


def render(template: str, *, channel: str, language: str, alert, contact_id, fix, link: str = "") -> str:
    """The words of one message. LINK: the short link it carries, if already made
    (prepare_links); else a new one is made here for the templates that carry one."""

    def page() -> str:
        return link or short_url(alert, contact_id)

    with translation.override(language):
        name = alert.person.display_name
        if template in ("alert", "duress") and channel == "voice":
            return " ".join(voice_parts(alert, fix))
        if template == "alert":
            head = _("BALISE ALERT: %(name)s %(what)s.") % {"name": name, "what": kind_words(alert.kind)}
        elif template == "duress":
            head = _("BALISE ALERT: %(name)s is in grave danger: her alert was cancelled under duress, do not call her.") % {"name": name}
        elif template == "cancelled":
            return _finish(channel, _("Balise: %(name)s cancelled her alert. No action needed.") % {"name": name})
        elif template == "resolved":
            return _finish(channel, _("Balise: the alert of %(name)s is closed. Thank you.") % {"name": name})
        elif template == "test":
            head = _("Balise TEST from %(name)s: the button works. No action needed.") % {"name": name}
            return _finish(channel, f"{head} {_where(fix)}")
        elif template == "ack":
            return _finish(channel, _ack_notice(alert, page()))
        elif template == UNDELIVERABLE:
            return _finish(channel, undeliverable_notice(name))
        elif template == "pin_locked":
            return _finish(channel, _pin_locked_notice(name))
        elif template in ("over_budget_device", "over_budget_association"):
            return _finish(channel, _over_budget_notice(template, name))
        elif template == "reply_unclear":
            return _finish(channel, _("Balise: several alerts reached you; answer from the link of each: %(link)s") % {
                "link": page()})
        else:
            raise ValueError(f"unknown message template {template!r}")
        if channel == "sms":
            own = alert.person.prevention_text if template == "alert" and alert.kind == "prevention" else ""
            if own and not alert.duress:
                return own_words_sms(alert, fix, page(), own)
            return first_sms(alert, fix, page())
        todo = _("Call 17 or 112 (deaf or unable to speak: SMS 114).")
        return _finish(channel, f"{head} {_where(fix)} {todo}")


# -- the first SMS of an alert: one GSM 7-bit part ----------------------------------------

SMS_PART = 160  # septets in a single-part GSM 7-bit SMS
GSM7_EXTENSION = set("^{}\\[~]|€")  # each takes two septets (escape + character)


def septets(text: str) -> int:
    return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)


def sms_parts(text: str) -> int:
    """How many parts TEXT takes as an SMS: GSM 7-bit (160 septets, 153 per part of a
    long message) when every character is in GSM 03.38, else UCS-2 (70, then 67)."""
    if all(ch in GSM7 for ch in text):
        n, single, multi = septets(text), 160, 153
    else:
        n, single, multi = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if n <= single else math.ceil(n / multi)


def _short_kind(kind: str) -> str:
    return {  # (a test alert has its own words: see first_sms)
        "prevention": _("feels in danger"),
        "emergency": _("is in grave danger"),
        "alarm": _("is in grave danger (alarm)"),
    }[kind]


def _short_places(fix) -> list[str]:
    """Where she is, from the longest to the shortest wording, the last one empty."""
    if fix is None or not _usable(fix):
        return [_(", position not known yet."), ""]
    place = nearest(fix.lat, fix.lon)
    names = [place.label(), place.name] if place else []
    coordinates = _(", at %(lat)s,%(lon)s.") % {"lat": f"{fix.lat:.4f}", "lon": f"{fix.lon:.4f}"}
    return [_(", near %(place)s.") % {"place": n} for n in dict.fromkeys(names)] + [coordinates, "."]


def first_sms(alert, fix, link: str) -> str:
    """The first SMS of an alert, in one GSM 7-bit part: who, what, where (a place name),
    the short link to her live page and what to do; the rest is on the page. When it
    does not fit, the place loses its region, then becomes coordinates, then goes (the
    page has it), then the name is cut: the link and what to do always stay. This is the
    one place that writes it."""
    name = alert.person.display_name

    def text(who: str, where: str, warn: bool = False) -> str:
        if alert.duress:
            head = _("BALISE: %(name)s in grave danger, made to cancel: do NOT call her") % {
                "name": who}
            todo = _("Call 17 or 112.")
        elif alert.kind == "test":
            head = _("BALISE TEST: %(name)s is testing her button") % {"name": who}
            todo = _("No action needed.")
        else:
            head = _("BALISE: %(name)s %(what)s") % {"name": who, "what": _short_kind(alert.kind)}
            todo = (_("Call 17 or 112. Do not call her. Reply OK if you go.") if warn
                    else _("Call 17 or 112. Reply OK if you go."))
        return to_gsm7(f"{head}{where or '.'} {link} {todo}")

    places = _short_places(fix)
    # "Do not call her" (calling her is the panic reflex, and the dangerous one) goes in
    # when it fits with the place's name; it is dropped before the place name becomes
    # coordinates. (Under duress the head says it already.)
    if not alert.duress and alert.kind != "test":
        named = places[:-2] if len(places) > 2 else places[:-1]
        for where in named:
            candidate = text(name, where, warn=True)
            if septets(candidate) <= SMS_PART:
                return candidate
    for where in places:
        candidate = text(name, where)
        if septets(candidate) <= SMS_PART:
            return candidate
    first_word = name.split()[0] if name.split() else name
    for where in places:
        candidate = text(first_word, where)
        if septets(candidate) <= SMS_PART:
            return candidate
    who = first_word
    while len(who) > 1 and septets(text(who + ".", "")) > SMS_PART:
        who = who[:-1]
    return text(who + ("." if who != first_word else ""), "")


def _own_head(name: str, own: str) -> str:
    return _("Balise, from %(name)s: %(text)s") % {"name": name, "text": own}


def own_words_sms(alert, fix, link: str, own: str) -> str:
    """Her own prevention words (chosen on her page), then where she is, the short link
    and what to do, in one GSM 7-bit part: the position shortens (in full, the place's
    name, coordinates), then goes (her page has it). Her page keeps her words within
    own_words_room, so that the shortest form always fits."""
    head, reply = _own_head(alert.person.display_name, own), _("Reply OK if you are going to help.")
    if fix is None or not _usable(fix):
        places = [_("Position not known yet."), ""]
    else:
        place = nearest(fix.lat, fix.lon)
        names = dict.fromkeys([place.label(), place.name] if place else [])
        places = [_where(fix), *(_("Near %(place)s.") % {"place": n} for n in names),
                  _("At %(lat)s,%(lon)s.") % {"lat": f"{fix.lat:.4f}", "lon": f"{fix.lon:.4f}"}, ""]
    for where in places:
        candidate = to_gsm7(" ".join(part for part in (head, where, link, reply) if part))
        if septets(candidate) <= SMS_PART:
            break
    return candidate  # (longer only for words saved before that limit: sent in two parts)


def own_words_room(name: str, link_length: int) -> int:
    """How many septets her own words may take for her prevention SMS to stay one part
    in its shortest form (no position), in the active language."""
    bare = to_gsm7(" ".join((_own_head(name, ""), "x" * link_length, _("Reply OK if you are going to help."))))
    return max(0, SMS_PART - septets(bare))


UNDELIVERABLE = "undeliverable"


def undeliverable_notice(name: str) -> str:
    """To the association's on-call line when a message of an alert could not be built
    or sent because of a fault (see balise.dispatch.dispatcher): she must not rely on it."""
    return _("Balise: the alert of %(name)s could not be sent to her contacts. Call them yourself.") % {"name": name}


def _pin_locked_notice(name: str) -> str:
    """To the on-call line when wrong cancel PINs lock an alert: someone may be trying to
    silence her (an aggressor guessing), or she is struggling; either way, staff look."""
    return _("Balise: several wrong cancel codes were typed on the alert of %(name)s. It can no longer be "
             "cancelled from her device. Check on her.") % {"name": name}


def _over_budget_notice(template: str, name: str) -> str:
    """To the on-call line, once per episode: alerts beyond a budget reach only it."""
    if template == "over_budget_device":
        return _("Balise: the device of %(name)s is raising more alerts than any real use does. Her contacts no "
                 "longer receive them; every one still reaches this line. Check the device in the back-office.") % {
            "name": name}
    return _("Balise: your association is raising more alerts than any real use does. Contacts no longer receive "
             "them; every one still reaches this line. Check the back-office.")


def _ack_notice(alert, link: str) -> str:
    """Someone is on it: the first answer that acknowledged the alert."""
    ack = (alert.acknowledgements.exclude(answer="cannot_help").select_related("contact").order_by("at", "id").first())
    who = responder_name(ack) if ack else _("Someone")
    what = answer_words(ack.answer) if ack else answer_words("acknowledged")
    return _("Balise: %(who)s %(what)s for %(name)s. Follow: %(link)s") % {
        "who": who, "what": what, "name": alert.person.display_name, "link": link,
    }


def render_contact_message(template: str, contact, link: str) -> str:
    """Messages to a contact outside any alert."""
    with translation.override(contact.language):
        name = contact.person.display_name
        if template == "invitation":
            text = _("Balise: %(name)s asks you to be one of her trusted contacts, to be warned if she is in danger. "
                     "Read and answer here: %(link)s") % {"name": name, "link": link}
        elif template == "stepped_down":
            text = _("Balise: you are no longer a trusted contact of %(name)s. To come back: %(link)s") % {
                "name": name, "link": link}
        elif template == "protection_ended":  # (balise.closure: her file is closed)
            text = _("Balise: the protection of %(name)s has ended. You will no longer receive her alerts.") % {
                "name": name}
        else:
            raise ValueError(f"unknown contact message template {template!r}")
        return to_gsm7(text)


def _finish(channel: str, text: str) -> str:
    return to_gsm7(text) if channel == "sms" else text
