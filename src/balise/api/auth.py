from ninja.security import HttpBearer

from balise.devices.actions import authenticate_token


class DeviceToken(HttpBearer):
    """Bearer device token; the authenticated device is request.auth."""

    def authenticate(self, request, token):
        return authenticate_token(token)
