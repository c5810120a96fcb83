"""What providers hear back on their own connection (an SMPP session's receipts and
incoming messages), handed to whoever registered for it.

Providers sit below the apps that know alerts and contacts, so they never import them:
the app that handles replies and receipts (balise.inbound) registers its functions here
when Django starts, and the registry passes `receipt` and `incoming` to the providers
that need them. Nothing registered: the event is logged and refused, so that the SMSC
delivers it again later.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_handlers: dict[str, object] = {}


def register(*, receipt=None, incoming=None) -> None:
    """RECEIPT(providers.smpp.Receipt); INCOMING(sender, text)."""
    if receipt is not None:
        _handlers["receipt"] = receipt
    if incoming is not None:
        _handlers["incoming"] = incoming


def _handler(kind: str):
    handler = _handlers.get(kind)
    if handler is None:
        raise RuntimeError(f"no handler registered for provider {kind} events")
    return handler


def receipt(event):
    """What the handler made of EVENT ("unknown_delivery": no delivery has its id yet)."""
    return _run(_handler("receipt"), event)


def incoming(sender: str, text: str):
    return _run(_handler("incoming"), sender, text)


def _run(handler, *args):
    """HANDLER on the provider's own long-lived thread: a database error closes this
    thread's connection (the next event opens a new one) and goes up, so that the
    provider refuses the event for now."""
    from django.db import DatabaseError, connection

    try:
        return handler(*args)
    except DatabaseError:
        connection.close()
        raise
