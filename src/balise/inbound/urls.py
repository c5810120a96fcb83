from django.urls import path

from balise.inbound import views

app_name = "inbound"

urlpatterns = [
    path("sms", views.sms, name="sms"),
    path("status/<str:token>", views.delivery_status, name="status"),
    path("voice/<str:token>", views.voice, name="voice"),
    path("voice/<str:token>/twiml", views.voice_twiml, name="voice_twiml"),
    path("voice/<str:token>/recording", views.voice_recording, name="voice_recording"),
    path("voice/<str:token>/speech.wav", views.voice_speech, name="voice_speech"),
]
