"""Django for benchmarks run as scripts, and the database a server they start must use.

Run as `python bench/<name>.py`, a script has bench/ on sys.path, not the
project root; each one puts the root there before importing from `bench`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent


def setup_django() -> None:
    """Configure Django when run as a script from the project root or bench/."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")
    import django

    django.setup()


def database_url() -> str:
    """DATABASE_URL for a server subprocess: the database this process uses.

    Without DATABASE_URL that is the embedded PostgreSQL, whose host is a
    socket directory (quoted into the URL).
    """
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from django.conf import settings

    db = settings.DATABASES["default"]
    host = db.get("HOST") or ""
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    netloc = f"{auth}@{quote(host, safe='')}" if host.startswith("/") else f"{auth}@{host}"
    if db.get("PORT"):
        netloc += f":{db['PORT']}"
    return f"postgres://{netloc}/{db['NAME']}"
