"""The heartbeat's statements are prepared on PostgreSQL (balise.db.rows, issue 16): planned
once per connection instead of at every heartbeat; and not where the settings leave
prepared statements off (BALISE_DB_PREPARE=0, a pooler that cannot keep them)."""

from unittest import mock

import pytest
from django.db import connection

from tests.spine.test_device_api import post

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")


def prepared() -> set[str]:
    """The statements prepared on this connection (a pooled one may hold earlier tests')."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {statement for (statement,) in cursor.fetchall()}


def heartbeat(client, world):
    r = post(client, world, "/heartbeat", {"battery_percent": 42, "button_connected": True})
    assert r.status_code == 200, r.content
    return r.json()


def test_the_heartbeat_statements_are_prepared_once(client, world):
    first = heartbeat(client, world)
    statements = prepared()
    # The device's UPDATE (here by its id: the view authenticated it), its open alerts, its key.
    assert any(s.startswith("UPDATE") and "battery_percent" in s for s in statements), statements
    assert any("UNION ALL" in s and "joinedpress" in s for s in statements)
    assert any("public_key_pem" in s for s in statements)
    again = heartbeat(client, world)
    assert prepared() == statements  # the same ones, used again
    assert again["open_alerts"] == first["open_alerts"] == []
    world.device.refresh_from_db()
    assert world.device.battery_percent == 42 and world.device.button_connected is True


def test_nothing_is_prepared_when_they_are_off(client, world):
    before = prepared()
    with mock.patch.dict(connection.settings_dict["OPTIONS"], {"prepare_threshold": None}), \
            mock.patch("balise.db._prepared_cursor", side_effect=AssertionError("prepared")):
        heartbeat(client, world)
    assert prepared() == before
    world.device.refresh_from_db()
    assert world.device.battery_percent == 42
