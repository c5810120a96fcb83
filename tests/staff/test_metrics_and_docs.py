"""/metrics is for Prometheus (bearer token) and for staff; the browsable API docs are
for staff unless BALISE_PUBLIC_API_DOCS is set; the OpenAPI schema and /health stay
public, and /health tells nothing about anyone."""

from __future__ import annotations

import pytest
from django.test import Client

from balise.associations.models import Membership
from tests.personas import staff_client

from .helpers import password_login

pytestmark = pytest.mark.django_db

TOKEN = "prometheus-scrape-token-0123456789"


@pytest.fixture
def anonymous():
    return Client(HTTP_HOST="127.0.0.1")


def test_metrics_need_the_token_or_a_staff_login(world, anonymous, settings):
    settings.METRICS_TOKEN = TOKEN
    refused = anonymous.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert b"balise_" not in refused.content
    for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer ", TOKEN):
        assert anonymous.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 401, header
    r = anonymous.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert r.status_code == 200 and b"balise_up 1" in r.content
    assert staff_client(world.staff).get("/metrics").status_code == 200


def test_without_a_token_only_staff_read_the_metrics(world, anonymous, settings):
    settings.METRICS_TOKEN = ""
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    client, _ = password_login(world.staff)  # a referent who has not given her second factor
    assert client.get("/metrics").status_code == 401
    assert staff_client(world.staff).get("/metrics").status_code == 200


def test_api_docs_are_for_staff_unless_made_public(world, other_world, anonymous, settings):
    r = anonymous.get("/api/v1/docs")
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")
    client, _ = password_login(world.staff)
    assert client.get("/api/v1/docs").status_code == 302  # password alone: on to the second factor
    assert staff_client(world.staff).get("/api/v1/docs").status_code == 200
    Membership.objects.filter(user=other_world.staff).update(role=Membership.Role.WORKER)
    assert staff_client(other_world.staff, second_factor=False).get("/api/v1/docs").status_code == 200

    settings.PUBLIC_API_DOCS = True
    assert anonymous.get("/api/v1/docs").status_code == 200


def test_the_schema_and_health_stay_public(world, anonymous):
    schema = anonymous.get("/api/v1/openapi.json")
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "Balise device API"
    health = anonymous.get("/health")
    assert health.status_code in (200, 503)
    body = health.json()
    assert set(body) == {"status", "database", "dispatchers_alive", "backlog_age_s", "pending", "providers"}
    assert all(isinstance(v, (str, bool, int, float)) for k, v in body.items() if k != "providers")
    assert isinstance(body["providers"], dict)  # each provider's health (balise.providers.health)


def test_the_public_health_does_not_read_the_latencies(world, anonymous):
    """Anyone may poll /health: it counts and dates rows, it never reads the last five
    minutes' deliveries (up to 20,000 rows) that /metrics reads for its quantiles."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert anonymous.get("/health").status_code in (200, 503)
    assert not [q["sql"] for q in queries if '"sent_at"' in q["sql"] and "SELECT" in q["sql"]
                and "MIN(" not in q["sql"].upper() and "COUNT(" not in q["sql"].upper()]
