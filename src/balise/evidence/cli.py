"""`balise evidence ...`: verify a package offline; export, listen, hold, delete (each
written to the custody log first); sweep (truncation notices, due deletions); keys."""

from __future__ import annotations

import sys
from pathlib import Path


def _fail(message: str) -> int:
    print(f"balise evidence: {message}", file=sys.stderr)
    return 2


def _one_line(command):
    """A key that does not open (a wrong master key, a damaged key file) is a one-line
    error, never a traceback."""
    def run(args) -> int:
        from balise_evidence.crypto import CryptoError

        try:
            return command(args)
        except CryptoError as exc:
            return _fail(f"a key does not open: {exc}")
    run.__name__ = command.__name__
    return run


def cmd_verify(args) -> int:
    from balise_evidence import verifier

    argv = [str(args.package), *sum((["--trust", t] for t in args.trust), [])]
    for option in ("trust_url", "trust_log", "pin", "tsa_root"):
        if getattr(args, option):
            argv += ["--" + option.replace("_", "-"), str(getattr(args, option))]
    return verifier.main(argv + (["--json"] if args.json else []))


def _django():
    from balise.cli import _setup_django

    _setup_django()


def _user(username: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise LookupError(f"no active user {username!r}")
    return user


@_one_line
def cmd_access(args) -> int:
    _django()
    from balise.evidence import actions

    try:
        user = _user(args.user)
        if args.action == "export":
            out = actions.export(user, args.reference, args.reason, args.legal_reference, Path(args.output))
            print(f"{out}")
        elif args.action == "listen":
            Path(args.output).write_bytes(actions.listen(user, args.reference, args.reason, args.legal_reference))
            print(f"{args.output}")
        else:
            case = actions.STATE_CHANGES[args.action](user, args.reference, args.reason, args.legal_reference)
            due = f" (due {case.deletion_due_at:%Y-%m-%d %H:%M})" if case.deletion_due_at else ""
            print(f"{case.reference}: {case.state}{due}")
    except LookupError as exc:
        return _fail(str(exc))
    except actions.crypto.CryptoError as exc:
        return _fail(f"a key does not open: {exc}")
    except actions.EvidenceError as exc:
        return _fail(exc.message)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror}")
    return 0


@_one_line
def cmd_sweep(args) -> int:
    _django()
    from balise.evidence import actions

    done = actions.sweep()
    print(f"truncation notices: {done['truncated']}, cases destroyed: {done['destroyed']}, "
          f"log heads timestamped: {done['timestamped']}")
    return 0


@_one_line
def cmd_keys(args) -> int:
    _django()
    from balise.evidence import actions

    try:
        for name, value in actions.server_keys().items():
            if name.endswith("fingerprint"):
                print(f"{name}: {value}")
        print(f"key_log_url: {actions.keyring.url()}")
        print(f"key_log_pin: {actions.key_log_pin()}")
    except actions.crypto.CryptoError as exc:
        return _fail(str(exc))
    return 0


@_one_line
def cmd_key_log(args) -> int:
    _django()
    from balise.evidence import actions

    data = actions.key_log_document()
    try:
        Path(args.output).write_bytes(data)
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror}")
    print(args.output)
    return 0


@_one_line
def cmd_rotate(args) -> int:
    _django()
    from balise.evidence import actions

    try:
        fp = actions.rotate_key(args.role)
    except actions.EvidenceError as exc:
        return _fail(exc.message)
    except OSError as exc:
        return _fail(f"cannot write the new key: {exc.strerror}")
    print(f"{args.role}: {fp} (restart the service so that every process uses it)")
    return 0


def add_parser(sub) -> None:
    evidence = sub.add_parser("evidence", help="the evidence vault: verify, export, custody actions")
    esub = evidence.add_subparsers(dest="evidence_command", required=True)
    verify = esub.add_parser("verify", help="check an evidence package offline and print a verdict")
    verify.add_argument("package", type=Path)
    verify.add_argument("--trust", action="append", default=[], metavar="FINGERPRINT")
    verify.add_argument("--trust-url", metavar="URL", help="the platform's published key log")
    verify.add_argument("--trust-log", metavar="FILE", help="a copy of the platform's key log")
    verify.add_argument("--pin", metavar="FINGERPRINT", help="the key log's first signing key, obtained out of band")
    verify.add_argument("--tsa-root", metavar="CA.pem", help="the timestamp authority's root, obtained out of band")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)
    for action, help_text in (("export", "write the signed package of a case"),
                              ("listen", "write the original Opus stream of a case"),
                              ("hold", "place a legal hold"), ("release", "release a legal hold"),
                              ("retain", "mark a sealed case retained"), ("delete", "schedule deletion (delayed)"),
                              ("cancel-deletion", "cancel a scheduled deletion")):
        p = esub.add_parser(action, help=help_text + " (custody-logged)")
        p.add_argument("reference")
        p.add_argument("--user", required=True, help="the staff member doing it")
        p.add_argument("--reason", required=True)
        p.add_argument("--legal-reference", default="")
        if action in ("export", "listen"):
            p.add_argument("-o", "--output", required=True)
        p.set_defaults(func=cmd_access, action=action)
    sweep = esub.add_parser("sweep", help="issue truncation notices and carry out due deletions")
    sweep.set_defaults(func=cmd_sweep)
    keys = esub.add_parser("keys", help="print the fingerprints of the server's evidence keys")
    keys.set_defaults(func=cmd_keys)
    key_log = esub.add_parser("key-log", help="write the platform's signed key log (as published) to a file")
    key_log.add_argument("-o", "--output", required=True)
    key_log.set_defaults(func=cmd_key_log)
    rotate = esub.add_parser("rotate-key", help="replace a server evidence key; past cases keep verifying")
    rotate.add_argument("role", choices=["signing", "export", "seal"])
    rotate.set_defaults(func=cmd_rotate)
