from __future__ import annotations

from django.test import Client
from django.urls import reverse

PASSWORD = "correct horse battery"


def password_login(user, client: Client | None = None, password: str = PASSWORD, **extra):
    """Log in through the back-office's login form, as a person does; returns (client, response)."""
    client = client or Client(HTTP_HOST="127.0.0.1")
    response = client.post(f"{reverse('admin:login')}?next=/admin/", {
        "username": user.get_username(), "password": password, "next": "/admin/"}, **extra)
    return client, response


def text(response) -> str:
    """The page as a person reads it (HTML entities decoded)."""
    import html

    return html.unescape(response.content.decode())
