"""A newcomer's first run: `balise serve --demo`, paste each printed command, read what
each contact would receive."""

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def balise_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PYTHONPATH=SRC, BALISE_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="balise.settings")
    env.pop("BALISE_SITE_URL", None)
    return env


@pytest.fixture
def demo_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "balise", "serve", "--demo", "--port", str(port)],
        env=balise_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    # A bound, not a wait: a first start migrates and builds the demo (13 s at load 5 here;
    # over 60 s beside a CPU burner and the rest of the suite at load 9).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Balise écoute sur" in line:
            break
    else:
        proc.kill()
        raise AssertionError(f"server did not start (exit {proc.poll()}):\n" + "".join(lines))
    yield proc, "".join(lines), tmp_path
    proc.terminate()
    proc.wait(timeout=30)


def test_demo_prints_commands_that_reach_every_contact(demo_server):
    proc, banner, data_dir = demo_server
    assert "mot de passe" in banner and "Jeton du bouton virtuel" in banner
    commands = [line.strip() for line in banner.splitlines() if " trigger " in line]
    assert [shlex.split(c)[shlex.split(c).index("trigger") + 1] for c in commands] == ["single", "double", "long", "test"]
    for command in commands:
        argv = shlex.split(command)
        if argv[0] != sys.executable and not Path(argv[0]).exists():
            argv = [sys.executable, "-m", "balise", *argv[1:]]
        done = subprocess.run(argv, env=balise_env(data_dir), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert "reçue par le serveur" in done.stdout and "client_id" not in done.stdout
    outbox = data_dir / "console-outbox.jsonl"
    deadline = time.monotonic() + 20
    records = []
    while time.monotonic() < deadline:
        records = [json.loads(x) for x in outbox.read_text().splitlines()] if outbox.exists() else []
        if len(records) >= 3 + 4 + 1 + 1:
            break
        time.sleep(0.2)
    # One button, one person: the double and long presses join her open alert and
    # escalate it, adding only what the stronger gesture adds (calls, the on-call line).
    on_call = "+33140000000"
    contacts = {r["to"] for r in records if r["alert_kind"] != "test" and r["to"] != on_call}
    assert len(contacts) == 3
    sent = sorted((r["to"], r["channel"]) for r in records if r["alert_kind"] != "test")
    assert sent == sorted([(c, "sms") for c in contacts] + [(c, "voice") for c in contacts] + [(on_call, "voice"), (on_call, "sms")])
    assert [(r["to"], r["channel"]) for r in records if r["alert_kind"] == "test"] == [(on_call, "sms")]
    french = next(r for r in records if r["to"] == "+33612345601" and r["channel"] == "sms")
    assert french["text"].startswith("BALISE: Camille")  # the one-part SMS (docs/providers.md)
    assert "/s/" in french["text"]  # the short link (docs/providers.md)


def test_trigger_explains_its_errors(tmp_path):
    env = balise_env(tmp_path)
    no_token = subprocess.run([sys.executable, "-m", "balise", "trigger", "single"], env=env, capture_output=True,
                              text=True, timeout=30)
    assert no_token.returncode != 0 and "token" in no_token.stderr and "Traceback" not in no_token.stderr
    port = free_port()
    unreachable = subprocess.run(
        [sys.executable, "-m", "balise", "trigger", "single", "--token", "x", "--server", f"http://127.0.0.1:{port}"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert unreachable.returncode != 0 and "cannot reach" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1
    bad = subprocess.run([sys.executable, "-m", "balise", "trigger", "wave"], env=env, capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
