from django.apps import AppConfig


class MarketsConfig(AppConfig):
    """The domain: the market hierarchy, order books, trades and settlements."""

    name = "markets"
    verbose_name = "Markets"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
