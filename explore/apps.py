from django.apps import AppConfig


class ExploreConfig(AppConfig):
    """Server-rendered pages with charts for looking at the recorded markets."""

    name = "explore"
    verbose_name = "Explore"
