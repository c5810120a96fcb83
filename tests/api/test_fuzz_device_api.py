"""Schemathesis over /api/v1/openapi.json, in process (WSGI), with a valid device token
and without one: seeded, a few hundred requests per operation in all, and any 5xx or
answer that breaks the published schema fails the test (issue 8, item 9)."""

from __future__ import annotations

import collections
import time

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks as openapi_checks

from balise.wsgi import application

# Examples per operation and per mode (with and without a token); schemathesis adds its
# coverage phase (boundary values, wrong types, missing fields) on top.
EXAMPLES = 100
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
]
REQUESTS: collections.Counter = collections.Counter()


def counted(app):
    def wsgi(environ, start_response):
        REQUESTS[environ["REQUEST_METHOD"] + " " + environ["PATH_INFO"].split("/")[3]] += 1
        return app(environ, start_response)

    return wsgi


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    # As Django's test client does: a request must not close the test's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# Loaded in process when the module is collected (the schema needs no database).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", counted(application))
schema.config.generation.update(modes=["positive", "negative"], deterministic=True, max_examples=EXAMPLES,
                                with_security_parameters=False)
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def report(request):
    started, cpu = time.monotonic(), time.process_time()
    yield
    by_method = collections.Counter()
    for key, count in REQUESTS.items():
        by_method[key.split()[0]] += count
    request.config.pluginmanager.get_plugin("terminalreporter").write_line(
        f"schemathesis: {sum(REQUESTS.values())} requests ({dict(sorted(by_method.items()))}) in "
        f"{time.monotonic() - started:.1f} s ({time.process_time() - cpu:.1f} s CPU)")


@schema.parametrize()
@FUZZ
def test_with_a_device_token(case, world):
    case.call_and_validate(headers={"Authorization": f"Bearer {world.token}"}, checks=CHECKS)


@schema.parametrize()
@FUZZ
def test_without_a_token(case, db):
    response = case.call_and_validate(checks=CHECKS)
    if case.method.upper() == case.operation.method.upper():
        assert response.status_code == 401, response.text
    else:  # the coverage phase also tries the methods an operation does not take
        assert response.status_code == 405, response.text
