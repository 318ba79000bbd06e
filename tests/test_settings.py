"""Settings refuse to fall back to the embedded database in production."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_debug_off_without_database_url_refuses_to_start():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG")}
    env.update(DEBUG="0", SECRET_KEY="x", DJANGO_SETTINGS_MODULE="kalshi_data.settings")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DATABASE_URL is not set and DEBUG is off" in result.stderr
