"""Fixtures for the spine's fault tests: loopback webhook sinks and balise subprocesses
on the test database (committed data: these tests use transactional_db)."""

import pytest

from tests.spine.loopback import Processes, Sink


@pytest.fixture
def procs(transactional_db, tmp_path):
    started = Processes(tmp_path)
    yield started
    # Before the database is flushed: nothing may still be writing to it.
    started.stop_all()


@pytest.fixture
def sinks():
    made: list[Sink] = []

    def make(script=None, port: int = 0) -> Sink:
        sink = Sink(script, port) if script is not None else Sink(port=port)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()
