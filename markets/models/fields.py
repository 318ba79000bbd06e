"""Exact fixed-point columns for Kalshi's prices and counts.

Kalshi sends prices as dollar strings with up to 4 decimals (sub-cent ticks
exist) and counts with 2 decimals (fractional contracts exist). Both are
stored as NUMERIC and read as Decimal, never as float. The scales are defined
here once.
"""

from django.db import models

PRICE_PLACES = 4
COUNT_PLACES = 2


class PriceField(models.DecimalField):
    """A dollar price, e.g. 0.5600, exact to 1/10000 of a dollar."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 10)
        kwargs.setdefault("decimal_places", PRICE_PLACES)
        super().__init__(*args, **kwargs)


class CountField(models.DecimalField):
    """A contract count or signed count change, e.g. 136.00 or -54.00."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 18)
        kwargs.setdefault("decimal_places", COUNT_PLACES)
        super().__init__(*args, **kwargs)
