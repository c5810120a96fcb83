from django.contrib.admin.apps import AdminConfig


class StaffAdminConfig(AdminConfig):
    """django.contrib.admin, whose default site asks staff who reach evidence for their
    second factor (see balise.staff.admin_site)."""

    default_site = "balise.staff.admin_site.StaffAdminSite"
