from django.urls import path

from balise.integrations.flic import views

app_name = "flic"

urlpatterns = [
    path("", views.webhook, name="webhook"),
]
