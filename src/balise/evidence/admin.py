import os
import tempfile
from pathlib import Path

from django.contrib import admin, messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from balise.associations.scoping import AssociationScopedAdmin, RolePermissions

from . import actions
from .forms import AccessForm
from .models import Case, CustodyRecord


class CustodyInline(RolePermissions, admin.TabularInline):
    model = CustodyRecord
    fields = ("index", "at", "action", "actor_label", "reason", "legal_reference")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("custody (every access, written before it happened)")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Case)
class CaseAdmin(AssociationScopedAdmin):
    """Read-only; every access (export, listen, hold, deletion) goes through the access
    page, or `balise evidence`, which write the custody record first."""

    list_display = ("reference", "opened_at", "recording", "state", "segments", "device", "deletion_due_at")
    list_filter = ("state", "recording")
    search_fields = ("reference",)
    fields = ("reference", "access", "session", "association", "person", "device", "alert", "state", "recording",
              "segments", "opened_at", "last_record_at", "closed_at", "truncated_at", "deletion_due_at",
              "key_destroyed_at")
    readonly_fields = fields
    inlines = [CustodyInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("access"))
    def access(self, case):
        return format_html('<a class="button" href="{}">{}</a>', reverse("admin:evidence_case_access", args=[case.pk]),
                           _("Export, listen, legal hold, deletion…"))

    def get_urls(self):
        return [path("<int:pk>/access/", self.admin_site.admin_view(self.access_view), name="evidence_case_access"),
                *super().get_urls()]

    def access_view(self, request, pk: int):
        case = self.get_queryset(request).filter(pk=pk).first()
        if case is None:
            raise Http404
        form = AccessForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                response = self._access(request, case, **form.cleaned_data)
            except actions.EvidenceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                if response is not None:
                    return response
                messages.success(request, _("Done; the custody log has the record."))
                return redirect("admin:evidence_case_change", case.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "case": case, "form": form,
                   "title": _("Access the evidence of case %(reference)s") % {"reference": case.reference}}
        return TemplateResponse(request, "admin/evidence/case/access.html", context)

    @staticmethod
    def _access(request, case, action: str, reason: str, legal_reference: str) -> HttpResponse | None:
        if action == "export":
            fd, name = tempfile.mkstemp(suffix=".zip")
            os.close(fd)
            try:
                actions.export(request.user, case.reference, reason, legal_reference, Path(name))
                package = open(name, "rb")
            finally:
                os.unlink(name)  # (the open file stays readable until the response is sent)
            return FileResponse(package, as_attachment=True, filename=f"balise-preuve-{case.reference}.zip",
                                content_type="application/zip")
        if action == "listen":
            stream = actions.listen(request.user, case.reference, reason, legal_reference)
            response = HttpResponse(stream, content_type="audio/ogg")
            response["Content-Disposition"] = f'attachment; filename="balise-{case.reference}.opus"'
            return response
        actions.STATE_CHANGES[action](request.user, case.reference, reason, legal_reference)
        return None
