import pytest

from balise.dispatch.dispatcher import Dispatcher
from balise.providers.console import CallSimulator, ConsoleProvider
from tests.integrations.flic import HS_SECRET


@pytest.fixture
def hs_secret(monkeypatch):
    monkeypatch.setenv("BALISE_FLIC_SECRET_LYON", HS_SECRET)
    return HS_SECRET


@pytest.fixture
def console(tmp_path):
    """A dispatcher sending through the console provider (calls not simulated)."""
    outbox = tmp_path / "console-outbox.jsonl"
    provider = ConsoleProvider(str(outbox), stream=open("/dev/null", "w"),
                               calls=CallSimulator({}, "off", 0, "http://127.0.0.1"))
    dispatcher = Dispatcher(name="flic-test", providers=[provider], workers=4)
    dispatcher.outbox_path = outbox
    yield dispatcher
    dispatcher.close()
