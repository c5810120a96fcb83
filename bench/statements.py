"""The SQL statements one alert and one heartbeat cost the web process, printed one by
one (with BEGIN/COMMIT/SAVEPOINT), on the database named by DATABASE_URL (else a fresh
SQLite file): what issue 16 asks to keep to the fewest.

    python bench/statements.py                     # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/balise_bench python bench/statements.py

The alert is posted as a device does, through the API, with no dispatcher running in
this process (its rows are left for `balise dispatch`): only the API's own statements.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch_latency import setup_django, setup_people  # noqa: E402


def main() -> int:
    os.environ.setdefault("BALISE_SECRET_KEY", "bench-only-secret-key")
    setup_django("balise-statements-")
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    tokens = setup_people(3)
    client = Client(HTTP_HOST="127.0.0.1")

    def post(path, body, token):
        return client.post(path, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    def alert_body():
        now = datetime.now(timezone.utc).isoformat()
        return {"client_id": str(uuid.uuid4()), "kind": "prevention", "gesture": "single", "triggered_at": now,
                "fixes": [{"id": str(uuid.uuid4()), "lat": 45.76, "lon": 4.83, "accuracy_m": 10, "recorded_at": now,
                           "source": "gps"}]}

    post("/api/v1/alerts", alert_body(), tokens[0])  # (warm: caches, prepared plans)
    post("/api/v1/heartbeat", {"battery_percent": 80}, tokens[0])
    for label, path, body in (("alert", "/api/v1/alerts", alert_body()),
                              ("heartbeat", "/api/v1/heartbeat", {"battery_percent": 81})):
        with CaptureQueriesContext(connection) as queries:
            response = post(path, body, tokens[1])
        print(f"== {label}: HTTP {response.status_code}, {len(queries)} statements ({connection.vendor})")
        for q in queries.captured_queries:
            print(f"   {q['time']:>6}s  {q['sql'][:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
