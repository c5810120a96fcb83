"""Episodes a station reports about itself once the server hears it again: the server
unreachable, alerts the server refused, evidence records it refused. Each is already
over: it becomes one supervision event, raised and cleared at the times the station
gives, told once to the association's on-call line. A report sent again (a heartbeat
retried) is recognised by the station's episode id and changes nothing."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from balise.supervision.checks import Condition, _raise
from balise.supervision.models import SupervisionEvent


def report_incidents(device, incidents, now: datetime | None = None) -> int:
    """INCIDENTS: the heartbeat's ``IncidentIn`` items. Returns the number of new events."""
    now = now or timezone.now()
    raised = 0
    for incident in incidents:
        subject = f"incident:{device.pk}:{incident.id.hex[:16]}"
        if SupervisionEvent.objects.filter(kind=incident.kind, subject=subject).exists():
            continue
        condition = Condition(incident.kind, subject, device.association_id, device.pk, person_id=device.holder_id,
                              detail=str(incident.count), raised_at=incident.started,
                              cleared_at=max(incident.ended, incident.started))
        raised += _raise(condition, now) is not None
    return raised
