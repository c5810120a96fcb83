from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from balise.dispatch.health import snapshot
from balise.providers import health as provider_health


@require_GET
def health(request):
    try:
        snap = snapshot(latencies=False)
    except DatabaseError:
        return JsonResponse({"status": "error", "database": False}, status=503)
    body = {
        "status": "ok" if snap["healthy"] else "degraded",
        "database": True,
        "dispatchers_alive": snap["dispatchers_alive"],
        "backlog_age_s": round(snap["backlog_age_s"], 3),
        "pending": snap["pending"],
        # Each provider's health as this process saw it (balise.providers.health).
        "providers": provider_health.report(),
    }
    return JsonResponse(body, status=200 if snap["healthy"] else 503)


@require_GET
def metrics(request):
    """Prometheus text exposition."""
    try:
        snap = snapshot()
    except DatabaseError:
        return HttpResponse("balise_up 0\n", content_type="text/plain; version=0.0.4", status=503)
    lines = [
        "# HELP balise_up The web process can read the database.",
        "# TYPE balise_up gauge",
        "balise_up 1",
        "# HELP balise_dispatchers_alive Dispatcher processes that sent a heartbeat recently.",
        "# TYPE balise_dispatchers_alive gauge",
        f"balise_dispatchers_alive {snap['dispatchers_alive']}",
        "# TYPE balise_deliveries gauge",
        f'balise_deliveries{{state="pending"}} {snap["pending"]}',
        f'balise_deliveries{{state="sending"}} {snap["sending"]}',
        "# HELP balise_deliveries_failed_recent Deliveries given up in the last 5 minutes.",
        "# TYPE balise_deliveries_failed_recent gauge",
        f"balise_deliveries_failed_recent {snap['failed_recent']}",
        "# HELP balise_dispatch_backlog_age_seconds Age of the oldest delivery due and not yet taken.",
        "# TYPE balise_dispatch_backlog_age_seconds gauge",
        f"balise_dispatch_backlog_age_seconds {snap['backlog_age_s']:.3f}",
        "# HELP balise_dispatch_latency_seconds Alert accepted to provider accepted, first attempts, last 5 minutes.",
        "# TYPE balise_dispatch_latency_seconds summary",
    ]
    for q, value in snap["latency"].items():
        if value is not None:
            lines.append(f'balise_dispatch_latency_seconds{{quantile="{q}"}} {value:.4f}')
    lines.append(f"balise_dispatch_latency_seconds_count {snap['latency_count']}")
    lines.extend(_provider_lines(provider_health.report()))
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")


def _provider_lines(report: dict) -> list[str]:
    """Each provider's health (balise.providers.health) as Prometheus lines."""
    if not report:
        return []
    lines = ["# HELP balise_provider_circuit_closed 1 when the provider is used, 0 while its circuit is open.",
             "# TYPE balise_provider_circuit_closed gauge"]
    lines += [f'balise_provider_circuit_closed{{provider="{n}"}} {int(h["circuit"] != "open")}' for n, h in report.items()]
    lines += ["# HELP balise_provider_error_rate Failed share of the provider's attempts, last 5 minutes.",
              "# TYPE balise_provider_error_rate gauge"]
    lines += [f'balise_provider_error_rate{{provider="{n}"}} {h["error_rate_5m"]}' for n, h in report.items()]
    lines += ["# HELP balise_provider_skipped_total Messages not offered to the provider while its circuit was open.",
              "# TYPE balise_provider_skipped_total counter"]
    lines += [f'balise_provider_skipped_total{{provider="{n}"}} {h["skipped"]}' for n, h in report.items()]
    return lines
