import asyncio

import pytest

from tests.providers.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, TwilioStandIn

SITE = "http://testserver"  # what the Django test client serves: callbacks are posted there
FROM = "+33757000000"


def send_on_a_loop(provider, message):
    """MESSAGE sent as the dispatcher sends it: on an event loop (the provider's send_async),
    the loop's clients closed after."""

    async def once():
        try:
            return await provider.send_async(message)
        finally:
            await provider.aclose()

    return asyncio.run(once())


@pytest.fixture
def standin():
    server = TwilioStandIn()
    yield server
    server.close()


@pytest.fixture
def twilio_settings(settings, standin):
    settings.SITE_URL = SITE
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_FROM = FROM
    settings.TWILIO_API_URL = standin.url
    settings.INBOUND_SECRET = "inbound-secret-not-used-by-twilio"
    return settings


@pytest.fixture(scope="session")
def smsc():
    """Jasmin, a real SMSC, on free loopback ports (tests/providers/smsc/jasmin.py), with
    the network behind it; started once for the session's SMPP tests."""
    from tests.providers.smsc.jasmin import JasminSMSC

    server = JasminSMSC().start()
    yield server
    server.stop()
