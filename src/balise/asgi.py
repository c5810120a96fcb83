import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "balise.settings")
django_application = get_asgi_application()

from balise.api.middleware import BodyLimitASGI  # noqa: E402  (needs the settings above)

# Body limits are counted as the bytes arrive, chunked bodies included.
application = BodyLimitASGI(django_application)
