"""The station's resident memory at idle (target <= 60 MB RSS).

Starts a real station process (simulated button, fixed location, simulated
modem, silent siren; bleak, httpx, pyserial and SQLite all loaded) against a
small device API server on loopback, sends one alert through the whole chain,
leaves it idle, then reads VmRSS/VmHWM from /proc. Run:
    PYTHONPATH=src python bench/station_memory.py [seconds]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "station"))

from station_fakes import TOKEN, FakeDeviceApi  # noqa: E402

CHILD = textwrap.dedent("""
    import asyncio, sys
    from balise_station.cli import _modem_factory
    from balise_station.config import load_config
    from balise_station.gestures import ButtonMode
    from balise_station.siren import PacedSink, Siren
    from balise_station.station import Station
    import contextlib

    async def main():
        cfg = load_config(sys.argv[1])
        with contextlib.ExitStack() as stack:
            st = Station(cfg, modem_factory=_modem_factory(cfg, stack), siren=Siren(PacedSink(), 5),
                         simulated_buttons={"button": ButtonMode.EDGES})
            st.supervisors = []
            await st.start()
            st.raise_alert("test", "api")  # one alert through the whole chain, then idle
            print("ready", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
""")


def rss(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) / 1024
    return out


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    api = FakeDeviceApi()
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "station.toml"
        cfg.write_text(f'[server]\nurl = "{api.url}"\ntoken = "{TOKEN}"\n[station]\nstate_dir = "state"\n'
                       '[location.fixed]\nlat = 48.85\nlon = 2.35\n[modem]\nenabled = true\nsimulated = true\n')
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(cfg)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout.readline().strip() == "ready"
            start = rss(proc.pid)
            time.sleep(seconds)
            end = rss(proc.pid)
        finally:
            proc.terminate()
            proc.wait()
        api.stop()
    print(f"station idle memory after start: RSS {start['VmRSS']:.1f} MB")
    print(f"after {seconds:g} s idle: RSS {end['VmRSS']:.1f} MB, peak {end['VmHWM']:.1f} MB "
          f"(target <= 60 MB: {'ok' if end['VmHWM'] <= 60 else 'MISSED'})")
    print(f"alerts on the server: {len(api.alerts)}, heartbeats: {len(api.heartbeats)}")


if __name__ == "__main__":
    main()
