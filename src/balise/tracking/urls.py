from django.urls import path

from balise.tracking import views

app_name = "tracking"

urlpatterns = [
    path("a/<str:token>", views.alert_page, name="alert"),
    path("a/<str:token>/state", views.alert_state, name="state"),
    path("a/<str:token>/events", views.alert_events, name="events"),
    path("a/<str:token>/answer", views.alert_answer, name="answer"),
    path("c/<str:token>", views.consent, name="consent"),
    path("s/<str:token>", views.short_link, name="short"),
    path("favicon.ico", views.favicon, name="favicon"),
]
