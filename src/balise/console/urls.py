from django.urls import path

from balise.console import views

app_name = "console"

urlpatterns = [
    path("", views.board, name="board"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("live/list", views.board_list, name="board_list"),
    path("alerts/<int:pk>/", views.alert_page, name="alert"),
    path("alerts/<int:pk>/live", views.alert_live, name="alert_live"),
    path("alerts/<int:pk>/take", views.alert_take, name="alert_take"),
    path("alerts/<int:pk>/note", views.alert_note, name="alert_note"),
    path("alerts/<int:pk>/close", views.alert_close, name="alert_close"),
]

urlpatterns += [
    path("people/", views.people, name="people"),
    path("people/new", views.enrol, name="enrol"),
    path("people/<int:pk>/", views.person_page, name="person"),
    path("people/<int:pk>/edit", views.person_edit, name="person_edit"),
    path("people/<int:pk>/pins", views.person_pins, name="person_pins"),
    path("people/<int:pk>/notes", views.person_note, name="person_note"),
    path("people/<int:pk>/tests", views.person_tests, name="person_tests"),
    path("people/<int:pk>/contacts", views.contact_add, name="contact_add"),
    path("people/<int:pk>/contacts/<int:contact_pk>/invite", views.contact_invite, name="contact_invite"),
]

urlpatterns += [
    path("audit/", views.audit_log, name="audit"),
]

urlpatterns += [
    path("people/<int:pk>/devices", views.device_add, name="device_add"),
    path("devices/<int:pk>/pair", views.device_pair, name="device_pair"),
    path("devices/<int:pk>/revoke", views.device_revoke, name="device_revoke"),
    path("devices/<int:pk>/evidence-key/revoke", views.device_evidence_key_revoke, name="device_evidence_key_revoke"),
]

urlpatterns += [
    path("supervision/", views.supervision_page, name="supervision"),
]
