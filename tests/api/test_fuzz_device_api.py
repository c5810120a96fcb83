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
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, NegativeDataRejectionConfig
from schemathesis.specs.openapi import checks as openapi_checks

from balise.wsgi import application

# Examples per operation with a token (schemathesis adds its coverage phase: boundary
# values, wrong types, missing fields, other methods); without one, every answer is 401
# before the body is read, so fewer are enough.
EXAMPLES = 200
EXAMPLES_WITHOUT_TOKEN = 50
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
]
# What was fuzzed, for the summary that tests/api/conftest.py prints.
REQUESTS: collections.Counter = collections.Counter()
STATUSES: collections.Counter = collections.Counter()
CLOCK = {"first": None, "last": None, "cpu": 0.0}


def counted(app):
    def wsgi(environ, start_response):
        def start(status, headers, *args):
            STATUSES[status[:1] + "xx"] += 1
            return start_response(status, headers, *args)

        began, cpu = time.monotonic(), time.process_time()
        CLOCK["first"] = CLOCK["first"] or began
        REQUESTS[environ["REQUEST_METHOD"]] += 1
        try:
            return app(environ, start)
        finally:
            CLOCK["last"], CLOCK["cpu"] = time.monotonic(), CLOCK["cpu"] + time.process_time() - cpu

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
# A negative body may be drawn past the API's 64 KiB limit (when generation runs slow, on a
# busy machine): its 413 is a refusal too.
schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
    expected_statuses=[*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, 413])
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@schema.parametrize()
@FUZZ
def test_with_a_device_token(case, world):
    case.call_and_validate(headers={"Authorization": f"Bearer {world.token}"}, checks=CHECKS)


@schema.parametrize()
@settings(FUZZ, max_examples=EXAMPLES_WITHOUT_TOKEN)
def test_without_a_token(case, db):
    response = case.call_and_validate(checks=CHECKS)
    if case.method.upper() != case.operation.method.upper():
        # the coverage phase also tries the methods an operation does not take
        assert response.status_code == 405, response.text
    elif case.operation.definition.raw.get("security"):
        assert response.status_code == 401, response.text
    else:  # POST /pair: the pairing code is the credential, the only route without a token
        assert case.operation.path == "/api/v1/pair", f"{case.operation.path} asks for no device token"
        assert response.status_code != 401, response.text
