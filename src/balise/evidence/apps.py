from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# Truncation notices, scheduled deletions and timestamps, every this many seconds.
SWEEP_SECONDS = 30.0


class EvidenceConfig(AppConfig):
    name = "balise.evidence"
    label = "evidence"
    verbose_name = _("Evidence")

    def ready(self):
        from balise.dispatch import periodic
        from balise.evidence.actions import sweep

        # On the dispatchers' periodic thread, never on the dispatch loop: a timestamp
        # authority that hangs (10 s per case) must not hold back alerts.
        periodic.register("evidence sweep", lambda now: sweep(now), lambda: SWEEP_SECONDS)
