"""WSGI entry point (gunicorn kalshi_data.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")
application = get_wsgi_application()
