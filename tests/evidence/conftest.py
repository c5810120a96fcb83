from __future__ import annotations

import json

import pytest

from balise_evidence import crypto
from balise_evidence.audio import GeneratedMicrophone
from balise_evidence.recorder import Recorder, record_all

from .memory import MemoryServer


class Clock:
    """Injected device clocks: wall and monotonic microseconds advancing 1 ms per read."""

    def __init__(self, start_us: int = 1_795_000_000_000_000):
        self.wall, self.mono = start_us, 5_000_000

    def wall_us(self) -> int:
        self.wall += 1_000
        return self.wall

    def mono_us(self) -> int:
        self.mono += 1_000
        return self.mono


def make_recording(device: crypto.DeviceKey, seal: crypto.SealKey, seconds: float = 12.0, seed: int = 1):
    clock = Clock()
    recorder = Recorder(device, seal.public_key, alert="7c0b6f0e-alert", wall_us=clock.wall_us, mono_us=clock.mono_us)
    return record_all(GeneratedMicrophone(seconds=seconds, seed=seed), recorder)


@pytest.fixture(scope="session")
def device_key() -> crypto.DeviceKey:
    return crypto.DeviceKey.generate()


@pytest.fixture(scope="session")
def seal_key() -> crypto.SealKey:
    return crypto.SealKey.generate()


@pytest.fixture(scope="session")
def recording(device_key, seal_key):
    """A 12 s recording: open, 3 segments, close."""
    return make_recording(device_key, seal_key)


@pytest.fixture
def server(device_key, seal_key) -> MemoryServer:
    return MemoryServer(device_key, seal_key)


URL = "/api/v1/evidence/records"


@pytest.fixture(scope="session")
def sealed(device_key):
    """A 12 s recording sealed to this server's key."""
    return make_recording(device_key, _server_seal())


@pytest.fixture
def enrolled(world, client, device_key):
    r = client.post("/api/v1/evidence/device-key", data={"public_key_pem": device_key.public_pem},
                    content_type="application/json", **world.auth)
    assert r.status_code == 201, r.content
    return world


def post(client, world, body):
    data = body.to_json() if hasattr(body, "to_json") else body
    return client.post(URL, data=json.dumps(data), content_type="application/json", **world.auth)


def snapshot():
    """Everything stored for evidence, to show that a refused upload changed nothing."""
    from balise.evidence.models import LogEntry, Record

    return (sorted((r.header_sha256, bytes(r.blob or b"")) for r in Record.objects.all()),
            list(LogEntry.objects.values_list("sha256", flat=True).order_by("pk")))


def upload_all(client, world, uploads):
    answers = [post(client, world, u) for u in uploads]
    assert [a.status_code for a in answers] == [201] * len(uploads), [a.content for a in answers]
    return [a.json() for a in answers]


def _server_seal():
    from balise.evidence import conf

    return conf.keys().seal


def platform_anchors():
    """What an expert obtains out of band: the platform's published key log, checked
    against the pinned fingerprint of its first signing key."""
    from balise.evidence import actions
    from balise_evidence import verifier

    return verifier.anchors_from_key_log(actions.key_log_document(), actions.key_log_pin())
