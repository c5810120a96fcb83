"""The `balise` command: serve, dispatch, trigger, manage."""

from __future__ import annotations

import argparse
import os
import signal
import sys

GESTURE_KINDS = {"single": "prevention", "double": "emergency", "long": "alarm", "test": "test"}
TRIGGERED = {"prevention": "Alerte de prévention", "emergency": "Alerte de secours", "alarm": "Alarme",
             "test": "Alerte d'essai"}


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "balise.settings")
    import django

    django.setup()


def _preload_place_names() -> None:
    """Load the offline gazetteer in the background now, so that the first messages
    after a start already carry the nearest place name."""
    from balise.tracking.places import preload

    preload()


def _fail(message: str) -> int:
    print(f"balise: {message}", file=sys.stderr)
    return 2


def cmd_serve(args) -> int:
    if args.workers < 1 or args.workers > 64:
        return _fail("--workers must be between 1 and 64")
    # Links in messages point at this server unless a public address is configured.
    os.environ.setdefault("BALISE_SITE_URL", f"http://{args.host}:{args.port}")
    _setup_django()
    import uvicorn
    from django.core.management import call_command

    from balise.dispatch.dispatcher import Supervisor

    call_command("migrate", interactive=False, verbosity=0)
    base = f"http://{args.host}:{args.port}"
    if args.demo:
        from balise.demo import create_demo

        demo = create_demo()
        _print_demo(demo, base)
    if args.workers > 1:
        return _serve_workers(args, base)
    _preload_place_names()
    supervisor = None
    if not args.no_dispatcher:
        # A dispatcher thread that dies is replaced at once (see Supervisor).
        supervisor = Supervisor().start()
    from balise.asgi import application

    # log_config=None: uvicorn's loggers keep settings.LOGGING's handlers (secrets masked).
    config = uvicorn.Config(application, host=args.host, port=args.port, log_level="warning", access_log=False,
                            lifespan="off", log_config=None,
                            timeout_graceful_shutdown=5)  # a kept-alive device must not hold a stop
    server = uvicorn.Server(config)
    print(f"Balise écoute sur {base}  (back-office : {base}/admin/)", flush=True)
    try:
        server.run()
    finally:
        if supervisor is not None:
            supervisor.stop(timeout=30)
    return 0


def _serve_workers(args, base: str) -> int:
    """N web processes on one socket, each with its own dispatcher (balise.serving)."""
    import uvicorn
    from django.db import connections
    from uvicorn.supervisors import Multiprocess

    connections.close_all()  # (the workers open their own)
    os.environ["BALISE_SERVE_DISPATCHER"] = "0" if args.no_dispatcher else "1"
    config = uvicorn.Config("balise.serving:application", host=args.host, port=args.port, workers=args.workers,
                            log_level="warning", access_log=False, lifespan="on", log_config=None,
                            timeout_graceful_shutdown=5)
    try:
        sock = config.bind_socket()
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    print(f"Balise écoute sur {base}  ({args.workers} processus web, chacun avec son dispatcher ;"
          f" back-office : {base}/admin/)", flush=True)
    Multiprocess(config, sockets=[sock]).run()
    return 0


def _own_command() -> str:
    """How to run this same `balise`, even when its virtualenv is not activated."""
    from pathlib import Path

    script = Path(sys.executable).parent / "balise"
    return str(script) if script.exists() else f"{sys.executable} -m balise"


def _print_demo(demo, base: str) -> None:
    print("\n=== Démonstration Balise ===")
    print(f"Back-office : {base}/admin/   identifiant : {demo.username}   mot de passe : {demo.password}")
    print(f"Console de permanence : {base}/console/   (mêmes identifiants)")
    print(f"Bilan du programme fictif : {base}/console/report/   (financeur : demo-financeur, même mot de passe)")
    print("À la première connexion, installez la double authentification (application TOTP).")
    print(f"Jeton du bouton virtuel : {demo.device_token}")
    print(f"Code d'annulation : {demo.cancel_pin}   code sous contrainte : {demo.duress_pin}")
    print("Déclencher chaque geste (les SMS et appels s'affichent ici) :")
    for gesture, label in (("single", "un appui (prévention)"), ("double", "deux appuis (secours)"),
                           ("long", "appui long (alarme)"), ("test", "test")):
        print(f"  # {label}\n  {_own_command()} trigger {gesture} --server {base} --token {demo.device_token}")
    print("", flush=True)


def cmd_dispatch(args) -> int:
    _setup_django()
    from balise.dispatch.dispatcher import Dispatcher

    dispatcher = Dispatcher(workers=args.workers)
    _preload_place_names()

    def stop(signum, frame):
        dispatcher.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"balise dispatch: {dispatcher.name} started", flush=True)
    dispatcher.run()  # (returns when stopped; any other exception is contained in its loop)
    return 0


def cmd_trigger(args) -> int:
    """Send a gesture to a server exactly as a device does."""
    import uuid
    from datetime import datetime, timezone

    import httpx

    token = args.token or os.environ.get("BALISE_DEVICE_TOKEN", "")
    if args.token_file:
        try:
            with open(args.token_file) as f:
                token = f.read().strip()
        except OSError as exc:
            return _fail(f"cannot read the token file: {exc.strerror}")
    if not token:
        return _fail("a device token is needed: --token, --token-file or BALISE_DEVICE_TOKEN")
    now = datetime.now(timezone.utc).isoformat()
    body = {
        "client_id": str(uuid.uuid4()),
        "kind": GESTURE_KINDS[args.gesture],
        "gesture": "api" if args.gesture == "test" else args.gesture,
        "triggered_at": now,
        "fixes": [{"id": str(uuid.uuid4()), "lat": args.lat, "lon": args.lon, "accuracy_m": args.accuracy,
                   "recorded_at": now, "source": "simulated"}],
    }
    headers = {"Authorization": f"Bearer {token}"}
    try:
        # Retried with the same client id: the server answers with the same alert.
        for attempt in range(3):
            try:
                response = httpx.post(f"{args.server.rstrip('/')}/api/v1/alerts", json=body, headers=headers, timeout=10)
                break
            except httpx.TransportError:
                if attempt == 2:
                    raise
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {args.server}: {type(exc).__name__}")
    if response.status_code >= 400:
        try:
            detail = response.json().get("message", "")
        except ValueError:
            detail = ""
        return _fail(f"the server refused the alert ({response.status_code}): {detail}")
    data = response.json()
    # What the person's button would have done, in words (the demo's banner is French).
    kind = TRIGGERED.get(data.get("kind"), TRIGGERED["prevention"])
    joined = " (jointe à l'alerte déjà ouverte)" if data.get("joined_to") else ""
    print(f"{kind} reçue par le serveur{joined} : suivez-la dans la console.")
    return 0


def cmd_manage(args) -> int:
    _setup_django()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["balise manage", *args.rest])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="balise", description="Balise: discreet alert system.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web server and a dispatcher in one process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true", help="create demo data and print how to try it")
    serve.add_argument("--no-dispatcher", action="store_true", help="web only (run `balise dispatch` elsewhere)")
    serve.add_argument("--workers", type=int, default=1,
                       help="web processes, each with its own dispatcher (PostgreSQL; see README)")
    serve.set_defaults(func=cmd_serve)

    dispatch = sub.add_parser("dispatch", help="run a dispatcher process (any number of them on PostgreSQL)")
    dispatch.add_argument("--workers", type=int, default=None, help="parallel provider calls")
    dispatch.set_defaults(func=cmd_dispatch)

    trigger = sub.add_parser("trigger", help="send a gesture to a server as a device would")
    trigger.add_argument("gesture", choices=sorted(GESTURE_KINDS))
    trigger.add_argument("--server", default="http://127.0.0.1:8000")
    trigger.add_argument("--token", default="")
    trigger.add_argument("--token-file", default="")
    trigger.add_argument("--lat", type=float, default=48.8566)
    trigger.add_argument("--lon", type=float, default=2.3522)
    trigger.add_argument("--accuracy", type=float, default=15.0)
    trigger.set_defaults(func=cmd_trigger)

    manage = sub.add_parser("manage", help="Django management commands (createsuperuser, ...)")
    manage.add_argument("rest", nargs=argparse.REMAINDER)
    manage.set_defaults(func=cmd_manage)

    from balise.evidence.cli import add_parser as add_evidence_parser

    add_evidence_parser(sub)
    from balise.providers.cli import add_parser as add_providers_parser

    add_providers_parser(sub)
    from balise.reports.cli import add_parser as add_reports_parser

    add_reports_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
