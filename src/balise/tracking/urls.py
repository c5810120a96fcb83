from django.urls import path

from balise.tracking import views

app_name = "tracking"

urlpatterns = [
    path("s/<str:token>", views.alert_page, name="alert"),
    path("s/<str:token>/state", views.alert_state, name="state"),
    path("s/<str:token>/events", views.alert_events, name="events"),
    path("s/<str:token>/answer", views.alert_answer, name="answer"),
    path("a/<str:token>", views.legacy_page, name="legacy"),
    path("c/<str:token>", views.consent, name="consent"),
    path("favicon.ico", views.favicon, name="favicon"),
]
