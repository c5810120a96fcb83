from django.contrib import admin
from django.urls import include, path

from balise.api.urls import api
from balise.dispatch import views as dispatch_views

urlpatterns = [
    path("api/v1/", api.urls),
    path("health", dispatch_views.health, name="health"),
    path("metrics", dispatch_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("inbound/", include("balise.inbound.urls")),
    path("", include("balise.tracking.urls")),
]
