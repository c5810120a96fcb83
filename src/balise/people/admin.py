from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from balise.associations.scoping import AssociationScopedAdmin, RolePermissions
from balise.console.models import AuditEntry
from balise.dispatch.models import Delivery
from balise.people.models import Contact, Person
from balise.tracking.actions import invite_contact

# The messages to a contact that belong to no alert (see Delivery.Purpose).
CONTACT_PURPOSES = (Delivery.Purpose.INVITATION, Delivery.Purpose.CONTACT_NOTICE)


class ContactInline(RolePermissions, admin.TabularInline):
    model = Contact
    extra = 0
    max_num = 5
    fields = ("position", "name", "phone", "language", "consent", "consent_changed_at")
    readonly_fields = ("consent", "consent_changed_at")


@admin.register(Person)
class PersonAdmin(AssociationScopedAdmin):
    view_action = AuditEntry.Action.VIEW_PERSON
    list_display = ("display_name", "association", "language", "created_at")
    search_fields = ("display_name",)
    exclude = ("cancel_pin_hash", "duress_pin_hash")
    inlines = [ContactInline]

    def save_formset(self, request, form, formset, change):
        """A new contact, or a contact given a new number, is asked for consent again."""
        invite = []
        for inline_form in formset.forms:
            contact = inline_form.instance
            if not isinstance(contact, Contact) or not inline_form.has_changed() or inline_form in formset.deleted_forms:
                continue
            if contact.pk is None or "phone" in inline_form.changed_data:
                contact.consent = Contact.Consent.PENDING
                contact.consent_changed_at = None
                invite.append(contact)
        super().save_formset(request, form, formset, change)
        for contact in invite:
            invite_contact(contact)
        if invite:
            messages.info(request, ngettext("%(n)d invitation SMS will be sent.", "%(n)d invitation SMS will be sent.",
                                            len(invite)) % {"n": len(invite)})


class MessageInline(RolePermissions, admin.TabularInline):
    model = Delivery
    fk_name = "contact"
    association_path = "person__association"  # (of the parent contact)
    verbose_name = _("message to the contact")
    verbose_name_plural = _("messages to the contact")
    extra = 0
    can_delete = False
    fields = ("created_at", "template", "state", "sent_at", "attempts", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(purpose__in=CONTACT_PURPOSES).order_by("-created_at")


@admin.register(Contact)
class ContactAdmin(AssociationScopedAdmin):
    """Consent of every contact at a glance; send the invitation again."""

    association_path = "person__association"
    list_display = ("name", "person", "position", "consent", "consent_changed_at", "invitation")
    list_filter = ("consent",)
    search_fields = ("name", "person__display_name")
    fields = ("person", "position", "name", "phone", "language", "consent", "consent_changed_at")
    readonly_fields = ("consent", "consent_changed_at")
    inlines = [MessageInline]
    actions = ["send_invitation"]

    def get_readonly_fields(self, request, obj=None):
        # Contacts are added from the person's page (that is where the limit of five holds).
        return (*self.readonly_fields, "person", "position") if obj else self.readonly_fields

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("last invitation"))
    def invitation(self, contact):
        last = (Delivery.objects.filter(contact=contact, purpose=Delivery.Purpose.INVITATION)
                .order_by("-created_at").first())
        return last.get_state_display() if last else "-"

    @admin.action(description=_("Send the invitation SMS again"), permissions=["change"])  # not for read-only members
    def send_invitation(self, request, queryset):
        # Only contacts of associations where her role allows it (not where she only looks).
        allowed = self.permitted(request, queryset, self.EDIT_ROLES)
        pending = [c for c in allowed if c.consent == Contact.Consent.PENDING]
        for contact in pending:
            invite_contact(contact)
        self.message_user(request, ngettext("%(n)d invitation will be sent (only to contacts who have not answered).",
                                            "%(n)d invitations will be sent (only to contacts who have not answered).",
                                            len(pending)) % {"n": len(pending)})
