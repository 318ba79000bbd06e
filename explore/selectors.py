"""Reads the explorer needs beyond markets.selectors: search and per-market stats.

Everything about books, candles and coverage comes from markets (through
the API, from the pages' scripts); these are only the lists the pages print.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Sequence

from django.db.models import Q, QuerySet

from markets.models import Event, Market, Series
from markets.selectors import events_list, fetchall_binary, markets_list, series_list

SEARCH_LIMIT = 20  # series and events listed beside the markets of a search


def _matching(queryset: QuerySet, q: str, ticker_field: str) -> QuerySet:
    if not q:
        return queryset
    return queryset.filter(Q(**{f"{ticker_field}__icontains": q}) | Q(title__icontains=q))


def market_search(
    *, q: str = "", status: str = "", category: str = "", series: str = ""
) -> QuerySet[Market]:
    """Markets whose ticker or title contains `q`, filtered, by ticker.

    A market has no category of its own: it is its series' (or event's).
    """
    markets = _matching(markets_list(), q, "ticker")
    if status:
        markets = markets.filter(status=status)
    if series:
        markets = markets.filter(series_ticker=series)
    if category:
        markets = markets.filter(
            Q(series_ticker__in=Series.objects.filter(category=category).values("ticker"))
            | Q(event_ticker__in=Event.objects.filter(category=category).values("event_ticker"))
        )
    return markets.order_by("ticker")


def series_search(*, q: str = "", category: str = "") -> QuerySet[Series]:
    series = _matching(series_list(), q, "ticker")
    if category:
        series = series.filter(category=category)
    return series.order_by("ticker")


def event_search(*, q: str = "", category: str = "", series: str = "") -> QuerySet[Event]:
    events = _matching(events_list(), q, "event_ticker")
    if category:
        events = events.filter(category=category)
    if series:
        events = events.filter(series_ticker=series)
    return events.order_by("event_ticker")


def filter_choices() -> dict[str, list[str]]:
    """The statuses and categories that exist, for the search form's menus."""
    return {
        "statuses": sorted(
            s for s in Market.objects.order_by().values_list("status", flat=True).distinct() if s
        ),
        "categories": sorted(
            c for c in Series.objects.order_by().values_list("category", flat=True).distinct() if c
        ),
    }


@dataclass
class MarketStats:
    last_price: Decimal | None = None  # yes price of the last trade
    last_trade_at: datetime | None = None  # the minute of the last trade
    volume: Decimal = Decimal(0)  # contracts traded over the whole record
    trade_count: int = 0


def market_stats(market_tickers: Sequence[str]) -> dict[str, MarketStats]:
    """Last trade price and total volume of each market, in one query.

    From the one-minute bars (markets/candles.py), which stay in PostgreSQL
    when the trades of old days move to the lake: the last bar's close is the
    last trade's price; the volume and count sum a market's bars, a minute
    at a time rather than a trade at a time.
    """
    result = {t: MarketStats() for t in market_tickers}
    if not market_tickers:
        return result
    rows = fetchall_binary(
        """
        SELECT m.t, last.close, last.minute, agg.volume, agg.n
        FROM unnest(%s::text[]) AS m(t)
        LEFT JOIN LATERAL (
            SELECT close, minute FROM trade_bars_1m b WHERE b.market_ticker = m.t
            ORDER BY minute DESC LIMIT 1) last ON true
        LEFT JOIN LATERAL (
            SELECT coalesce(sum(volume), 0) AS volume, coalesce(sum(trade_count), 0) AS n
            FROM trade_bars_1m b WHERE b.market_ticker = m.t) agg ON true
        """,
        [list(market_tickers)],
    )
    for ticker, price, at, volume, count in rows:
        result[ticker] = MarketStats(price, at, volume, count)
    return result
