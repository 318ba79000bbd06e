"""Reads of the recorded data, for the API and anything else that serves it.

Each function is one question (a page of trades, the candles of a market,
what a market's record covers) answered with as few queries as the question
allows. Querysets are returned where callers filter and paginate further
(the hierarchy); the tick tables are read with raw SQL and keyset bounds, so
a deep page costs the same as the first. Time ranges are half-open
[start, end) on each table's partition column, so PostgreSQL prunes
partitions. Writes live in ingest.py; the book at an instant in replay.py.
"""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from .models import Event, Market, Series, Settlement

# --- Hierarchy ----------------------------------------------------------------


def series_list():
    return Series.objects.all()


def series_get(ticker: str) -> Series | None:
    return Series.objects.filter(ticker=ticker).first()


def events_list():
    """Events, each annotated with `market_count` (markets joined by ticker)."""
    counts = (
        Market.objects.filter(event_ticker=OuterRef("event_ticker"))
        .order_by()
        .values("event_ticker")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Event.objects.annotate(
        market_count=Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))
    )


def event_get(event_ticker: str) -> Event | None:
    """The event with `markets` (its markets, by ticker) and `market_count` set."""
    event = events_list().filter(event_ticker=event_ticker).first()
    if event is not None:
        event.markets = list(Market.objects.filter(event_ticker=event_ticker).order_by("ticker"))
    return event


def markets_list():
    return Market.objects.all()


def market_get(ticker: str) -> Market | None:
    return Market.objects.filter(ticker=ticker).first()


def settlements_list():
    return Settlement.objects.all()


def settlement_get(market_ticker: str) -> Settlement | None:
    return Settlement.objects.filter(market_ticker=market_ticker).first()
