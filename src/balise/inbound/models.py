from django.db import models


class SeenSignature(models.Model):
    """A callback signature already accepted: the same request played again is refused.
    Kept for as long as its timestamp would still be accepted (BALISE_INBOUND_MAX_SKEW)."""

    digest = models.CharField(max_length=64, primary_key=True)  # SHA-256 of the signature
    seen_at = models.DateTimeField(db_index=True)
