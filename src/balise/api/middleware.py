from django.conf import settings

from balise.api.errors import error_response


class DeviceAPIBodyLimit:
    """Refuse oversized device API bodies before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, "bad_request", "invalid Content-Length")
            limit = settings.VOICE_MESSAGE_MAX_BYTES if request.path == "/api/v1/voice-message" else settings.API_MAX_BODY_BYTES
            if length > limit:
                return error_response(413, "too_large", f"the body is limited to {limit} bytes")
        return self.get_response(request)
