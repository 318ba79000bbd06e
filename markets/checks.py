"""System checks for the storage settings, with stable ids (markets.E001...)."""

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.database)
def check_partition_window(app_configs, **kwargs):
    errors = []
    if settings.PARTITION_DAYS_AHEAD < 1:
        errors.append(
            checks.Error(
                "PARTITION_DAYS_AHEAD must be at least 1, or tomorrow's rows "
                "would have no partition until a writer creates it.",
                id="markets.E001",
            )
        )
    if settings.PARTITION_DAYS_BEHIND < 0:
        errors.append(
            checks.Error("PARTITION_DAYS_BEHIND cannot be negative.", id="markets.E002")
        )
    return errors
