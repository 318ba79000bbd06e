from django.apps import AppConfig


class CollectorConfig(AppConfig):
    """Live collection from Kalshi, trade backfill, and the exchange simulator."""

    name = "collector"
