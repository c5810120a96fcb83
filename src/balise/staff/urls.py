from django.urls import path

from balise.staff import views

app_name = "staff"

urlpatterns = [
    path("second-factor/", views.verify, name="verify"),
    path("second-factor/enrol/", views.enrol, name="enrol"),
    path("second-factor/recovery-codes/", views.recovery_codes, name="recovery_codes"),
    path("sign-out/", views.sign_out, name="sign_out"),
]
