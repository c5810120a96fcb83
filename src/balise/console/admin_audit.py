"""What staff do in the Django admin reaches the association's audit log like what they
do in the console: every addition, change, deletion and admin action, and every opening
of a person's (or an alert's) page. One seam: AuditedAdmin, a base of
balise.associations.scoping.AssociationScopedAdmin, which every admin registered for
staff uses.

An entry keeps the model, the object's name and Django's change message (the changed
fields' verbose names, untranslated, as the admin history keeps them): the audit page
puts them in words in the reader's language (AuditEntry.detail_text). Never a value:
no PIN, token or hash can reach it.
"""

from __future__ import annotations

import json
from functools import wraps

from django.contrib.admin.models import LogEntry
from django.utils import translation
from django.utils.translation import gettext as _

from balise.associations import scoping
from balise.console.models import AuditEntry

Action = AuditEntry.Action


def person_path(model) -> str | None:
    """The lookup from an object of MODEL to the person it concerns, or None."""
    if model._meta.label == "people.Person":
        return "pk"
    names = {f.name for f in model._meta.fields}
    for field, path in (("person", "person"), ("holder", "holder"), ("device", "device__holder")):
        if field in names:
            return path
    return None


def entry(user, obj, association_path: str, action: str, changes=None) -> AuditEntry | None:
    """The unsaved entry about OBJ (None when OBJ belongs to no association)."""
    association_id = scoping.association_of(obj, association_path)
    if association_id is None:
        return None
    model = type(obj)
    path = person_path(model)
    alert_id = obj.pk if model._meta.label == "alerts.Alert" else getattr(obj, "alert_id", None)
    return AuditEntry(association_id=association_id, user=user, action=action,
                      person_id=scoping.association_of(obj, path) if path else None, alert_id=alert_id,
                      model=model._meta.label_lower, detail=str(obj)[:300],
                      changes=changes if isinstance(changes, list) else [])


def record(user, objects, association_path: str, action: str, changes=None) -> None:
    rows = [e for e in (entry(user, obj, association_path, action, changes) for obj in objects) if e is not None]
    AuditEntry.objects.bulk_create(rows)


def _label(label: str) -> str:
    """A field's verbose name as the admin keeps it (untranslated, capitalised), in words."""
    for candidate in (label, label[:1].lower() + label[1:]):
        words = _(candidate)
        if words != candidate:
            return words
    return label


def _in_words(changes: list) -> list:
    """CHANGES with the field names translated (Django's message translates the rest)."""
    out = []
    for message in changes:
        if isinstance(message, dict) and isinstance(message.get("changed"), dict):
            changed = message["changed"]
            message = {"changed": {**changed, "fields": [_label(str(f)) for f in changed.get("fields", [])]}}
        out.append(message)
    return out


def describe(audit: AuditEntry) -> str:
    """An admin entry in words, in the active language: what it was about and what changed."""
    from django.apps import apps

    try:
        what = apps.get_model(audit.model)._meta.verbose_name
    except (LookupError, ValueError):
        what = _("record")
    if audit.action == Action.ADMIN_ACTION:
        change = "; ".join(_(c["action"]) for c in audit.changes if isinstance(c, dict) and "action" in c)
    elif audit.action in (Action.ADMIN_CHANGE, Action.ADMIN_ADD):
        change = LogEntry(change_message=json.dumps(_in_words(audit.changes))).get_change_message() or _("No fields changed.")
    else:
        change = ""
    name = audit.detail or _("(name erased)")
    if not change:
        return _("%(what)s “%(name)s”") % {"what": what, "name": name}
    return _("%(what)s “%(name)s”: %(change)s") % {"what": what, "name": name, "change": change}


class AuditedAdmin:
    """Admin base: Django's own history (LogEntry) is kept, and each change also reaches
    the audit log of the object's association (its `association_path`)."""

    # What opening an object's page records (a person's file, an alert), or "".
    view_action = ""

    def log_addition(self, request, obj, message):
        logged = super().log_addition(request, obj, message)
        record(request.user, [obj], self.association_path, Action.ADMIN_ADD, message)
        return logged

    def log_change(self, request, obj, message):
        logged = super().log_change(request, obj, message)
        record(request.user, [obj], self.association_path, Action.ADMIN_CHANGE, message)
        return logged

    def log_deletions(self, request, queryset):
        # (Called before the deletion, by the delete page and the bulk delete action alike.)
        logged = super().log_deletions(request, queryset)
        record(request.user, list(queryset), self.association_path, Action.ADMIN_DELETE)
        return logged

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if self.view_action and obj is not None and request.method == "GET":
            record(request.user, [obj], self.association_path, self.view_action)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_actions(self, request):
        """Each admin action (but the bulk delete, logged by log_deletions) is recorded on
        the objects it acts on: the selection in associations where her role allows it."""
        return {name: (func if name == "delete_selected" else self._audited(func, description), name, description)
                for name, (func, _name, description) in super().get_actions(request).items()}

    def _audited(self, func, description):
        with translation.override(None):  # kept untranslated, put in words when read
            words = str(description)

        @wraps(func)
        def run(modeladmin, request, queryset):
            response = func(modeladmin, request, queryset)
            acted_on = modeladmin.permitted(request, queryset, modeladmin.EDIT_ROLES)
            record(request.user, acted_on, modeladmin.association_path, Action.ADMIN_ACTION, [{"action": words}])
            return response

        return run
