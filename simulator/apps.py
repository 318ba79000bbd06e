from django.apps import AppConfig


class SimulatorAppConfig(AppConfig):
    """The local exchange that speaks Kalshi's protocol (`manage.py kalshi_sim`)."""

    name = "simulator"
