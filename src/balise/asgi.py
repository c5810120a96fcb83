import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "balise.settings")
django_application = get_asgi_application()

from balise.api.fastpath import DeviceFastPath  # noqa: E402  (needs the settings above)
from balise.api.middleware import BodyLimitASGI  # noqa: E402

# Body limits are counted as the bytes arrive, chunked bodies included; heartbeats and
# presses are answered without Django's per-request machinery where they can be (issue 16).
application = BodyLimitASGI(DeviceFastPath(django_application))
