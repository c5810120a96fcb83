"""Flic 2 buttons through the Flic app's Cloud Buttons: the webhook each press reaches,
and her page (the webview the Flic app shows, also a private link)."""
