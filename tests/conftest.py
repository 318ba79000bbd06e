"""Test-wide fixtures: the test database gets its partitions like production."""

import pytest
from django.core.management import call_command


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Migrate (pytest-django), then create the partition window as cron would."""
    with django_db_blocker.unblock():
        call_command("pgpartition", "--yes", stdout=None)
