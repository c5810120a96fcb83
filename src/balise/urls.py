from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from balise.api.urls import api
from balise.dispatch import views as dispatch_views
from balise.staff.access import api_docs_access, metrics_access

admin.site.site_header = _("Balise back-office")
admin.site.site_title = _("Balise")
admin.site.index_title = _("Your association")


def _api_docs():
    """Ninja's docs page, behind the staff gate (this route comes before api.urls, so it
    is the one that answers /api/v1/docs)."""
    from functools import partial

    from ninja.openapi.views import openapi_view

    return api_docs_access(partial(openapi_view, api=api))


urlpatterns = [
    path("api/v1/docs", _api_docs(), name="api-docs"),
    path("api/v1/", api.urls),
    path("health", dispatch_views.health, name="health"),
    path("metrics", metrics_access(dispatch_views.metrics), name="metrics"),
    path("admin/", admin.site.urls),
    path("staff/", include("balise.staff.urls")),
    path("inbound/", include("balise.inbound.urls")),
    path("console/stock/", include("balise.stock.urls")),
    path("console/closure/", include("balise.closure.urls")),
    path("console/report/", include("balise.reports.urls")),
    path("console/", include("balise.console.urls")),
    path("integrations/flic/", include("balise.integrations.flic.urls")),
    path("", include("balise.tracking.urls")),
]
