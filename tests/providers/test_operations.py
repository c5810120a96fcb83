"""Operations: `balise providers check` (credentials validated, nothing sent), each
provider's health in /health and /metrics, and the circuit breaker that skips a
provider failing repeatedly (an injected clock stands for the time it stays open)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from balise.dispatch.dispatcher import Job, send_with_failover
from balise.providers import health
from balise.providers.base import OutgoingMessage, PermanentError, UnavailableError
from balise.providers.health import Guarded
from tests.providers.conftest import FROM
from tests.providers.twilio_standin import ACCOUNT_SID, AUTH_TOKEN
from tests.spine.helpers import RecordingProvider

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(autouse=True)
def fresh_health():
    health.forget()
    yield
    health.forget()


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def message() -> OutgoingMessage:
    return OutgoingMessage(key=str(uuid.uuid4()), channel="sms", to="+33612345601", text="Balise", language="fr",
                           alert_id=1, alert_kind="emergency", purpose="alert")


def job() -> Job:
    m = message()
    return Job(uuid.UUID(m.key), 1, 1, m)


def test_a_provider_failing_repeatedly_is_skipped_for_a_while_then_tried_again():
    clock = Clock()
    down = RecordingProvider("primary", fail=[UnavailableError("HTTP 503")] * 3)
    primary = Guarded(down, failures=3, open_seconds=60, clock=clock)
    backup = Guarded(RecordingProvider("backup"), clock=clock)
    for _ in range(3):
        assert send_with_failover([primary, backup], job()).provider == "backup"
    assert health.report(clock.now)["primary"]["circuit"] == "open"
    # Open: the primary is not even asked (it would have taken this one).
    outcome = send_with_failover([primary, backup], job())
    assert outcome.provider == "backup" and down.sent == []  # (the backup works: primary may be skipped)
    state = health.report(clock.now)["primary"]
    assert state["skipped"] == 1 and state["consecutive_failures"] == 3 and state["error_rate_5m"] == 1.0
    assert state["last_success"] is None and "503" in state["last_error"]
    clock.now += 61  # the breaker's time is over: one message tries it again, and it works
    assert send_with_failover([primary, backup], job()).provider == "primary"
    state = health.report(clock.now)["primary"]
    assert state["circuit"] == "closed" and state["last_success"] is not None
    assert state["attempts_5m"] == 4 and state["error_rate_5m"] == 0.75


def test_a_failed_trial_opens_the_breaker_again_and_refusals_of_a_recipient_do_not_count():
    clock = Clock()
    inner = RecordingProvider("p", fail=[UnavailableError("down")] * 2 + [PermanentError("invalid number")] * 3)
    guarded = Guarded(inner, failures=2, open_seconds=10, clock=clock)
    Guarded(RecordingProvider("spare"), clock=clock)  # another provider that works: p may be skipped
    for _ in range(2):
        with pytest.raises(UnavailableError):
            guarded.send(message())
    clock.now += 11
    with pytest.raises(PermanentError):  # the trial: the provider answered, it works
        guarded.send(message())
    assert health.report(clock.now)["p"]["circuit"] == "closed"
    for _ in range(2):
        with pytest.raises(PermanentError):
            guarded.send(message())
    assert health.report(clock.now)["p"]["circuit"] == "closed"
    inner.fail = [UnavailableError("down")] * 3
    for _ in range(2):
        with pytest.raises(UnavailableError):
            guarded.send(message())
    clock.now += 11
    with pytest.raises(UnavailableError, match="down"):  # the trial fails: open again
        guarded.send(message())
    with pytest.raises(UnavailableError, match="circuit open"):
        guarded.send(message())


@pytest.mark.django_db
def test_health_and_metrics_show_each_providers_health(client, settings):
    settings.METRICS_TOKEN = "metrics-test-token"
    guarded = Guarded(RecordingProvider("twilio", fail=[UnavailableError("HTTP 503")]), failures=5)
    with pytest.raises(UnavailableError):
        guarded.send(message())
    guarded.send(message())
    body = client.get("/health").json()
    assert body["providers"]["twilio"]["circuit"] == "closed"
    assert body["providers"]["twilio"]["last_success"] is not None
    metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token").content.decode()
    assert 'balise_provider_circuit_closed{provider="twilio"} 1' in metrics
    assert 'balise_provider_error_rate{provider="twilio"} 0.5' in metrics


def check(env: dict) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(SRC), **env}
    full.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "balise", "providers", "check"], env=full, capture_output=True,
                          text=True, timeout=120)


def test_providers_check_validates_credentials_without_sending(standin):
    env = {"BALISE_PROVIDERS": "twilio,console", "BALISE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
           "BALISE_TWILIO_AUTH_TOKEN": AUTH_TOKEN, "BALISE_TWILIO_FROM": FROM, "BALISE_TWILIO_API_URL": standin.url}
    good = check(env)
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines() == ["twilio: ok (account active)", "console: ok (nothing to check)"]
    bad = check({**env, "BALISE_TWILIO_AUTH_TOKEN": "wrong"})
    assert bad.returncode == 1 and "twilio: FAILED" in bad.stderr and "20003" in bad.stderr
    assert AUTH_TOKEN not in bad.stderr + bad.stdout and "wrong" not in bad.stderr
    missing = check({"BALISE_PROVIDERS": "twilio"})
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "BALISE_TWILIO_ACCOUNT_SID" in missing.stderr
    assert standin.messages == [] and standin.calls == []
    assert {path for _, path in standin.requests} == {f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"}


def test_a_failing_provider_is_never_skipped_when_every_other_one_fails_too():
    clock = Clock()
    a = Guarded(RecordingProvider("a", fail=[UnavailableError("down")] * 3), failures=2, clock=clock)
    b = Guarded(RecordingProvider("b", fail=[UnavailableError("down")] * 2), failures=2, clock=clock)
    for _ in range(2):
        assert not send_with_failover([a, b], job()).ok
    assert {n: h["circuit"] for n, h in health.report(clock.now).items()} == {"a": "open", "b": "open"}
    # Both open: skipping both would send nothing, so both are still tried; b has recovered.
    outcome = send_with_failover([a, b], job())
    assert outcome.ok and outcome.provider == "b" and "circuit open" not in outcome.error
    # b works again: a is skipped while its time lasts.
    assert send_with_failover([a, b], job()).provider == "b"
    assert health.report(clock.now)["a"]["skipped"] == 1
