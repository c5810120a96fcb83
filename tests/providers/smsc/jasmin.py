"""A real SMSC for the SMPP tests: Jasmin 0.11.0 (PyPI `jasmin`; 0.11.1 drops the receipts of
messages that came in over SMPP: "'SubmitSM' object has no attribute 'response'", jookies/jasmin#1236), started on free
loopback ports against this machine's RabbitMQ (a virtual host of its own) and Redis.

Jasmin lives in its own virtualenv (REPO/.tools/jasmin-venv, built by
scripts/setup-jasmin: Twisted and its other dependencies stay out of Balise's), and
runs with the AMQP 0-9-1 spec shipped by `txamqp3` (the wheel does not ship the
/etc/jasmin/resource/amqp0-9-1.xml its default configuration names).

It is configured through its jCli console (telnet), as an operator would: a group and a
user for Balise (an SMPP account, "smpps"), an SMPP client connector to the network
behind it (tests/providers/smsc/network.py), an MT route to that connector and an MO
route back to Balise's account.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.providers.smsc.network import Network

REPO = Path(__file__).resolve().parents[3]
VENV = REPO / ".tools" / "jasmin-venv"
SETUP = REPO / "scripts" / "setup-jasmin"
SYSTEM_ID = "balise"
PASSWORD = "bal1se"  # (SMPP passwords are 8 characters at most)
NUMBER = "+33757000001"  # Balise's sender number


class JasminError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jasmind() -> Path:
    script = VENV / "bin" / "jasmind.py"
    if not script.exists():
        done = subprocess.run([str(SETUP)], capture_output=True, text=True)
        if done.returncode != 0 or not script.exists():
            raise JasminError(f"scripts/setup-jasmin failed: {done.stderr[-2000:]}")
    return script


def _spec() -> Path:
    found = sorted(VENV.glob("lib/python3*/site-packages/txamqp/specs/standard/amqp0-9-1.stripped.xml"))
    if not found:
        raise JasminError("txamqp3's AMQP 0-9-1 spec is missing from the jasmin virtualenv")
    return found[0]


def _rabbitmqctl(*args: str) -> None:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise JasminError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()[-500:]}")


class JCli:
    """Jasmin's console over telnet: each command answered up to the next prompt."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._read_until(b"Session ref")
        self.run("")

    def _read_until(self, *tokens: bytes, timeout: float = 20.0) -> str:
        buf, end = b"", time.monotonic() + timeout
        while not any(t in buf for t in tokens):
            if time.monotonic() > end:
                raise JasminError(f"jCli did not answer: {buf[-300:]!r}")
            part = self.sock.recv(4096)
            if not part:
                raise JasminError("jCli closed the connection")
            buf += part
        return buf.decode("utf-8", errors="replace")

    def run(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self._read_until(b"jcli : ", b"> ")

    def block(self, opening: str, *lines: str) -> str:
        """An edition block: OPENING, its LINES, then ok; the answer to ok."""
        self.run(opening)
        for line in lines:
            out = self.run(line)
            if "Unknown" in out or "Error" in out or "error" in out:
                self.run("ko")
                raise JasminError(f"jCli refused {line!r}: {out.strip()}")
        out = self.run("ok")
        if "Successfully" not in out:
            raise JasminError(f"jCli refused {opening!r}: {out.strip()}")
        return out

    def close(self) -> None:
        try:
            self.sock.sendall(b"quit\r\n")
        except OSError:
            pass
        self.sock.close()


class JasminSMSC:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="balise-jasmin-"))
        self.vhost = f"balise-test-{uuid.uuid4().hex[:8]}"
        self.ports = {name: free_port() for name in ("smpp", "smpp_pb", "cm", "router", "jcli", "http", "icpt")}
        self.port = self.ports["smpp"]
        self.process: subprocess.Popen | None = None
        self.network = Network()
        self.jcli: JCli | None = None

    def start(self) -> JasminSMSC:
        script = _jasmind()
        _rabbitmqctl("add_vhost", self.vhost)
        _rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        (self.dir / "etc").mkdir()
        (self.dir / "log").mkdir()
        config = self.dir / "etc" / "jasmin.cfg"
        p = self.ports
        config.write_text(f"""
[smpp-server]
bind = 127.0.0.1
port = {p['smpp']}
[smpp-server-pb]
bind = 127.0.0.1
port = {p['smpp_pb']}
[smpp-server-pb-client]
port = {p['smpp_pb']}
[client-management]
bind = 127.0.0.1
port = {p['cm']}
[router]
bind = 127.0.0.1
port = {p['router']}
[jcli]
bind = 127.0.0.1
port = {p['jcli']}
authentication = False
[http-api]
bind = 127.0.0.1
port = {p['http']}
[interceptor]
bind = 127.0.0.1
port = {p['icpt']}
[interceptor-client]
port = {p['icpt']}
[amqp-broker]
vhost = {self.vhost}
spec = {_spec()}
[dlr]
dlr_lookup_retry_delay = 1
dlr_lookup_max_retries = 5
[redis-client]
dbid = {1 + uuid.uuid4().int % 15}
""")
        env = {**os.environ, "ROOT_PATH": str(self.dir), "LOG_PATH": str(self.dir / "log"),
               "CONFIG_PATH": str(self.dir / "etc"), "STORE_PATH": str(self.dir / "store")}
        self.log = open(self.dir / "jasmind.out", "wb")
        # jasmind takes a lock at /tmp/jasmind (one instance per machine): this one's is
        # in its own directory, so that a stale lock or another test run does not stop it.
        launcher = ("import lockfile, os, runpy, sys; original = lockfile.FileLock; "
                    "lockfile.FileLock = lambda path, *a, **k: original(os.environ['BALISE_JASMIND_LOCK'], *a, **k); "
                    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
        env["BALISE_JASMIND_LOCK"] = str(self.dir / "jasmind")
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "python"), "-c", launcher, str(script), "-c", str(config), "--enable-dlr-thrower",
             "--enable-dlr-lookup", "--disable-http-api"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        try:
            self._wait_port(p["jcli"])
            self._wait_port(p["smpp"])
            self.jcli = JCli(p["jcli"])
            self._configure()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_port(self, port: int, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise JasminError(f"jasmind stopped at start:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)  # (polling a port that is not there yet)
        raise JasminError(f"jasmind did not listen on {port}:\n{self.output()}")

    def _configure(self) -> None:
        j = self.jcli
        j.block("group -a", "gid balise")
        j.block("user -a", f"username {SYSTEM_ID}", f"password {PASSWORD}", "uid balise", "gid balise")
        j.block("smppccm -a", "cid network", "host 127.0.0.1", f"port {self.network.port}",
                f"username {self.network.system_id}", f"password {self.network.password}", "bind transceiver",
                "submit_throughput 1000")
        j.run("smppccm -1 network")
        if not self.network.bound.wait(30):
            raise JasminError(f"Jasmin's connector did not bind to the network:\n{self.output()}")
        j.block("mtrouter -a", "type defaultroute", "connector smppc(network)", "rate 0.00")
        j.block("morouter -a", f"type defaultroute", f"connector smpps({SYSTEM_ID})")

    def throughput(self, per_second: int | None) -> None:
        """Balise's account may submit PER_SECOND messages a second (None: 100 000);
        Jasmin answers ESME_RTHROTTLED beyond."""
        value = "100000" if per_second is None else str(per_second)
        self.jcli.block(f"user -u {SYSTEM_ID}", f"mt_messaging_cred quota smpps_throughput {value}")

    def output(self) -> str:
        try:
            return (self.dir / "jasmind.out").read_text(errors="replace")[-4000:] + "".join(
                f"\n--- {f.name}\n" + f.read_text(errors="replace")[-3000:] for f in (self.dir / "log").glob("*.log")
                if f.name in ("smpp-server.log", "messages.log", "dlr.log", "smppclient-manager.log"))
        except OSError:
            return ""

    def stop(self) -> None:
        if self.jcli is not None:
            self.jcli.close()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.network.close()
        try:
            _rabbitmqctl("delete_vhost", self.vhost)
        except (JasminError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
