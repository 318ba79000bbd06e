"""Django for benchmarks run as scripts, and the database a server they start must use.

Run as `python bench/<name>.py`, a script has bench/ on sys.path, not the
project root; each one puts the root there before importing from `bench`.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def scratch_database(name: str):
    """A fresh database `name` for a benchmark, with its day partitions; dropped
    on the way out, whatever happens (Django's test-database machinery)."""
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    old_config = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            call_command("pgpartition", "--yes", stdout=devnull)
        yield
    finally:
        connection.close()
        teardown_databases(old_config, verbosity=0)
