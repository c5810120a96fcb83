from django.urls import path

from balise.closure import views

app_name = "closure"

urlpatterns = [
    path("people/<int:pk>/close", views.close, name="close"),
    path("retention", views.retention, name="retention"),
]
