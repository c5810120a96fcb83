from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from real_server import Server, free_port  # noqa: E402
from station_fakes import FakeDeviceApi, FakeGpsd  # noqa: E402


@pytest.fixture(autouse=True)
def _state_home(tmp_path, monkeypatch) -> None:
    """A station's default state directory ($XDG_STATE_HOME/balise-station) in the test's own
    directory, never in the home of whoever runs the tests."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture(autouse=True)
def _english(monkeypatch) -> None:
    """The station's tests read its messages in English (the source language), through the
    English catalogue; French, the default, is what tests/station/test_i18n.py checks, with
    the ``french`` fixture."""
    from balise_station import i18n

    monkeypatch.setenv(i18n.ENV, "en")
    i18n.activate("en")


@pytest.fixture
def french(monkeypatch) -> None:
    """As on a station: no language chosen anywhere, so French."""
    from balise_station import i18n

    monkeypatch.delenv(i18n.ENV, raising=False)
    i18n.activate("fr")


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    """A real `balise serve --demo` (token in ``server.token``); restart it with ``start(demo=False)``."""
    s = Server(tmp_path / "server", free_port())
    s.start(demo=True)
    yield s
    s.stop()


@pytest.fixture
def device_api() -> Iterator[FakeDeviceApi]:
    api = FakeDeviceApi()
    yield api
    api.stop()


@pytest.fixture
def gpsd() -> Iterator[FakeGpsd]:
    g = FakeGpsd()
    yield g
    g.close()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`balise-station` run in-process configures logging on the test's captured stderr,
    which pytest closes afterwards: take its handlers off again."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
