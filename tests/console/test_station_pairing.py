"""`balise-station pair CODE` against a real server on loopback: the code from the
console becomes the station's token file; a used code is refused in one line."""

from __future__ import annotations

import stat

import pytest

from balise.console import pairing
from balise.devices.actions import authenticate_token
from balise_station.cli import main

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_station_pairs_with_the_code_and_keeps_its_token_private(live_server, world, tmp_path, capsys):
    code = pairing.create_code(world.device, world.staff)
    token_file = tmp_path / "etc" / "token"
    assert main(["pair", pairing.display(code), "--server", live_server.url, "--token-file", str(token_file)]) == 0
    token = token_file.read_text().strip()
    out = capsys.readouterr()
    assert token not in out.out + out.err and "station-lyon" in out.out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert authenticate_token(token).pk == world.device.pk
    assert authenticate_token(world.token) is None  # the old token is revoked

    assert main(["pair", code, "--server", live_server.url, "--token-file", str(token_file)]) == 1
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("balise-station")]
    # One line, in the station's default language (the rest is the server's own log).
    assert len(said) == 1 and "déjà utilisé" in said[0]
    assert token_file.read_text().strip() == token  # a refused pairing leaves the token alone


def test_a_code_without_server_is_a_usage_error(tmp_path, capsys):
    assert main(["pair", "ABCDE-FGHJK"]) == 2
    assert "--server" in capsys.readouterr().err
