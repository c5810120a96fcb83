from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from balise.api.urls import api
from balise.dispatch import views as dispatch_views

admin.site.site_header = _("Balise back-office")
admin.site.site_title = _("Balise")
admin.site.index_title = _("Your association")

urlpatterns = [
    path("api/v1/", api.urls),
    path("health", dispatch_views.health, name="health"),
    path("metrics", dispatch_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("inbound/", include("balise.inbound.urls")),
    path("integrations/flic/", include("balise.integrations.flic.urls")),
    path("", include("balise.tracking.urls")),
]
