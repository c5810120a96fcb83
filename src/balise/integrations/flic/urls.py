from django.urls import path

from balise.integrations.flic import page, views

app_name = "flic"

urlpatterns = [
    path("", views.webhook, name="webhook"),
    path("page/", page.webview, name="webview"),
    path("p/<str:key>/", page.private, name="private"),
]
