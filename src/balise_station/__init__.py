"""Balise home station: the reference client of the Balise device API.

It never imports Django: it runs on a small Linux box next to the person's
buttons and talks to the server over HTTP only.
"""

__version__ = "0.1.0"
