"""One-minute trade bars, kept as trades land: what candles are built from.

Derived data: every bar can be recomputed from `trades` (markets/candles.py,
`refresh_bars`), and is, whenever a trade of its minute is stored, late and
backfilled trades included. Not part of the archived record: bars stay in
PostgreSQL when a day's trades move to the lake, so candles never read it.
"""

from django.db import models

from .fields import CountField, PriceField


class TradeBar(models.Model):
    """The trades of one market in one minute [minute, minute + 1 min)."""

    pk = models.CompositePrimaryKey("market_ticker", "minute")
    market_ticker = models.TextField()
    minute = models.DateTimeField(help_text="The minute's start (UTC, whole minute).")
    open = PriceField(help_text="Yes price of the first trade by (ts, trade_id).")
    high = PriceField()
    low = PriceField()
    close = PriceField(help_text="Yes price of the last trade by (ts, trade_id).")
    volume = CountField()
    trade_count = models.IntegerField()
    # sum(yes_price * count), exact (4 + 2 decimal places): VWAP over any
    # number of minutes is the sum of these over the sum of volumes.
    notional = models.DecimalField(max_digits=32, decimal_places=6)
    yes_taker_volume = CountField()
    no_taker_volume = CountField()

    class Meta:
        db_table = "trade_bars_1m"
