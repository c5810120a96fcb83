"""A busy database (SQLite locked, PostgreSQL restarting) answers 503 with Retry-After on
the pages and callbacks: a contact's tap or a gateway's receipt is tried again, never a 500."""

from __future__ import annotations

import logging

from django.db import OperationalError

from balise.tracking import actions
from tests.contacts.helpers import page_link, raise_alert


def _locked(*args, **kwargs):
    raise OperationalError("database is locked")


def test_an_answer_on_a_busy_database_is_a_503_to_retry(client, world, monkeypatch, caplog):
    alert = raise_alert(world, "prevention")
    url = f"{page_link(alert, world.contacts[0])}/answer"
    monkeypatch.setattr(actions, "answer_alert", _locked)
    with caplog.at_level(logging.WARNING):
        as_json = client.post(url, {"answer": "on_my_way"}, HTTP_ACCEPT="application/json")
        as_page = client.post(url, {"answer": "on_my_way"})
    assert (as_json.status_code, as_json.json()["error"], as_json["Retry-After"]) == (503, "unavailable", "2")
    assert as_page.status_code == 503 and as_page["Retry-After"] == "2"
    assert "réessayez dans quelques secondes" in as_page.content.decode()
    assert "Camille" not in as_page.content.decode()
    # The log says which error, never the link's token.
    assert "database is locked" in caplog.text and url.split("/")[2] not in caplog.text
    monkeypatch.undo()
    assert client.post(url, {"answer": "on_my_way"}, HTTP_ACCEPT="application/json").status_code == 200


def test_other_errors_are_not_taken_for_a_busy_database(client, world, monkeypatch):
    alert = raise_alert(world, "prevention")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(actions, "answer_alert", broken)
    client.raise_request_exception = False
    r = client.post(f"{page_link(alert, world.contacts[0])}/answer", {"answer": "on_my_way"},
                    HTTP_ACCEPT="application/json")
    assert r.status_code == 500
