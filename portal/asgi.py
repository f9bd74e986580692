"""ASGI entry point: what gunicorn's uvicorn workers serve (`portal.asgi:application`).

Sync model calls are answered on the event loop by the serving fast path; everything
else is the Django WSGI application (`portal.wsgi`), run in a thread pool through a
streaming bridge. See docs/architecture.md.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

django_application = get_wsgi_application()

from models_app.serving.front import ServingFront  # noqa: E402  (needs the app registry)
from portal.wsgi_bridge import WSGIBridge  # noqa: E402

application = ServingFront(fallback=WSGIBridge(django_application, workers=settings.WEB_THREADS))
