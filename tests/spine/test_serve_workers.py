"""`balise serve --workers N`: N web processes on one port, each with its own
dispatcher; an alert accepted by any of them is sent, and a SIGTERM stops them all."""

import json
import signal
import subprocess
import sys
import time

import httpx

from tests.spine.test_first_run import balise_env, free_port


def test_two_web_processes_each_run_a_dispatcher_and_send_an_alert(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "balise", "serve", "--demo", "--workers", "2", "--port", str(port)],
                            env=balise_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = []
        for line in proc.stdout:
            banner.append(line)
            if "Balise écoute sur" in line:
                break
        assert "2 processus web" in "".join(banner), "".join(banner)
        token = next(line.split(":", 1)[1].strip() for line in banner if "Jeton du bouton virtuel" in line)
        health = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and health.get("dispatchers_alive") != 2:
            try:
                health = httpx.get(f"{base}/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        assert health.get("dispatchers_alive") == 2, health  # one per web process
        done = subprocess.run([sys.executable, "-m", "balise", "trigger", "single", "--token", token, "--server", base],
                              env=balise_env(tmp_path), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outbox = tmp_path / "console-outbox.jsonl"
        records = []
        while time.monotonic() < deadline and len({r["to"] for r in records if r["alert_kind"]}) < 3:
            records = [json.loads(x) for x in outbox.read_text().splitlines()] if outbox.exists() else []
            time.sleep(0.2)
        sent = [r for r in records if r["alert_kind"] == "prevention"]
        assert len({r["to"] for r in sent}) == 3 and len(sent) == len({r["key"] for r in sent}), records
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
