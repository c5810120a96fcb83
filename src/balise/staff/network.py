"""The client's address, for login throttling: the connection's, unless the operator
said that Balise runs behind trusted reverse proxies (BALISE_TRUSTED_PROXIES=N), in which
case it is read from the proxies' header, N entries from the right (the entries to the
left of what the proxies appended are whatever the client wrote, and are not trusted)."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _valid(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    meta_key = "HTTP_" + settings.CLIENT_IP_HEADER.upper().replace("-", "_")
    values = [v for v in request.META.get(meta_key, "").split(",") if v.strip()]
    if not values:
        return remote
    chosen = values[-proxies] if len(values) >= proxies else values[0]
    return _valid(chosen) or remote
