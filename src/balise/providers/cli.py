"""`balise providers check`: each configured provider (BALISE_PROVIDERS) validates its
credentials and reaches its service, without sending anything (Twilio: the account is
fetched). One line per provider; exit 0 when all are fine, 1 when one is not, 2 when
the configuration itself is wrong."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    providers = sub.add_parser("providers", help="SMS and call providers")
    actions = providers.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate each provider's credentials without sending anything")
    check.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from balise.cli import _fail, _setup_django

    _setup_django()
    from balise.providers.base import ProviderError
    from balise.providers.registry import build_providers

    try:
        providers = build_providers(start_sessions=False)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    failed = 0
    for provider in providers:
        try:
            print(f"{provider.name}: ok ({provider.check()})")
        except ProviderError as exc:
            failed += 1
            print(f"{provider.name}: FAILED ({exc})", file=sys.stderr)
        finally:
            provider.close()
    return 1 if failed else 0
