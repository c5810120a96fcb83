from django.urls import path

from balise.reports import views

app_name = "reports"

urlpatterns = [
    path("", views.report, name="report"),
    path("report.pdf", views.report_pdf, name="pdf"),
    path("report.csv", views.report_csv, name="csv"),
]
