"""Test-wide fixtures: the test database gets its partitions like production."""

import pytest
from django.core.management import call_command


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Migrate (pytest-django), then create the partition window as cron would."""
    with django_db_blocker.unblock():
        call_command("pgpartition", "--yes", stdout=None)


@pytest.fixture(autouse=True)
def _raw_archive_in_tmp(tmp_path_factory, monkeypatch):
    """A collector started by a test archives its frames in a scratch directory,
    not in the project's var/raw (collector/raw_archive.py)."""
    monkeypatch.setenv("RAW_ARCHIVE_URL", str(tmp_path_factory.mktemp("raw")))
