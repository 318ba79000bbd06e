from django.apps import AppConfig


class CollectorConfig(AppConfig):
    """Live collection from Kalshi and trade backfill."""

    name = "collector"
