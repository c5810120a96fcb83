"""Balise evidence: the record format, its cryptography, the recorder and the verifier.

Pure and Django-free, so that the station (which records) and the server (which
receives, keeps and exports) share one definition of a record. See docs/evidence.md.
"""

FORMAT_VERSION = 1
