from django.apps import AppConfig


class BacktestApiConfig(AppConfig):
    """The REST API that serves the recorded data to backtests."""

    name = "backtest_api"
    verbose_name = "Backtest API"
