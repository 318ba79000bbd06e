"""Endpoints of the backtest API: configuration plus one selector call each.

Cross-cutting behaviour lives once elsewhere: the envelope (renderers.py),
the error shape (exceptions.py), keyset pages (pagination.py), keys and
rate limits (authentication.py, throttling.py).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from markets import candles, selectors
from markets.replay import WorkBudgetExceeded, WorkMeter

from . import filters, serializers
from .exceptions import TooMuchWork
from .renderers import RawJSON
from .limits import HeavyEndpointMixin
from .pagination import (
    KeysetPagination,
    TickPagination,
    decode_cursor,
    encode_cursor,
    keyset_page,
    paginated_response,
)


class HierarchyListView(generics.ListAPIView):
    """A keyset-paginated list of a small table, ordered by its primary key."""

    pagination_class = KeysetPagination
    keyset_types = (str,)

    def get_queryset(self):
        return self.selector()


class HierarchyDetailView(generics.RetrieveAPIView):
    """One object by ticker; an unknown ticker is a 404 that names it."""

    not_found_message = "No such object: {ticker}."

    def get_object(self):
        ticker = self.kwargs["ticker"]
        obj = type(self).getter(ticker) if storable(ticker) else None
        if obj is None:
            raise NotFound(self.not_found_message.format(ticker=self.kwargs["ticker"]))
        return obj


# --- Series -------------------------------------------------------------------


class SeriesListView(HierarchyListView):
    """Kalshi series, by ticker."""

    selector = staticmethod(selectors.series_list)
    serializer_class = serializers.SeriesSerializer
    filterset_class = filters.SeriesFilter
    keyset_fields = ("ticker",)


class SeriesDetailView(HierarchyDetailView):
    """One series."""

    getter = staticmethod(selectors.series_get)
    serializer_class = serializers.SeriesSerializer
    not_found_message = "Unknown series ticker: {ticker}."


# --- Markets ------------------------------------------------------------------


class MarketListView(HierarchyListView):
    """Markets, by ticker, each with the coverage of its record."""

    selector = staticmethod(selectors.markets_list)
    serializer_class = serializers.MarketSerializer
    filterset_class = filters.MarketFilter
    keyset_fields = ("ticker",)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return selectors.with_coverage(page)


class MarketDetailView(HierarchyDetailView):
    """One market with the coverage of its record."""

    getter = staticmethod(selectors.market_with_coverage)
    serializer_class = serializers.MarketSerializer
    not_found_message = "Unknown market ticker: {ticker}."


# --- Events ---------------------------------------------------------------------


class EventListView(HierarchyListView):
    """Events, by ticker, with how many markets each has."""

    selector = staticmethod(selectors.events_list)
    serializer_class = serializers.EventSerializer
    filterset_class = filters.EventFilter
    keyset_fields = ("event_ticker",)


class EventDetailView(HierarchyDetailView):
    """One event with its markets."""

    getter = staticmethod(selectors.event_get)
    serializer_class = serializers.EventDetailSerializer
    not_found_message = "Unknown event ticker: {ticker}."


# --- Settlements ----------------------------------------------------------------


class SettlementListView(HierarchyListView):
    """How markets settled, by market ticker."""

    selector = staticmethod(selectors.settlements_list)
    serializer_class = serializers.SettlementSerializer
    filterset_class = filters.SettlementFilter
    keyset_fields = ("market_ticker",)


class SettlementDetailView(HierarchyDetailView):
    """How one market settled."""

    getter = staticmethod(selectors.settlement_get)
    serializer_class = serializers.SettlementSerializer
    not_found_message = "No settlement recorded for market {ticker}."


# --- Trades and deltas ------------------------------------------------------------


class TickListView(APIView):
    """A keyset page of one market's rows from a tick table.

    Subclasses name the selector, its key types and the output serializer.
    Computed endpoints are plain APIViews: they have no queryset, and the
    browsable API then offers no (meaningless) filter form.
    """

    params_class = serializers.TickPageParams
    pagination_class = TickPagination

    def get(self, request):
        params = parse_params(self.params_class, request)
        ticker = require_market(params["market_ticker"])
        after = None
        if params.get("cursor"):
            after = decode_cursor(params["cursor"], self.key_types)
        limit = params["limit"]
        rows = type(self).selector(
            market_ticker=ticker,
            start=params.get("start_time"),
            end=params.get("end_time"),
            after=after,
            limit=limit + 1,
        )
        page = keyset_page(rows, limit, lambda row: row.key)
        next_cursor = (
            encode_cursor(page.next_key, self.key_types) if page.next_key else None
        )
        return paginated_response(
            self.serializer_class(page.rows, many=True).data, next_cursor
        )


@extend_schema(
    parameters=[serializers.TickPageParams],
    responses=serializers.TradeSerializer(many=True),
)
class TradeListView(TickListView):
    """A market's trades in (ts, trade_id) order; ts in [start_time, end_time)."""

    selector = staticmethod(selectors.trades_page)
    key_types = selectors.TRADE_KEY_TYPES
    serializer_class = serializers.TradeSerializer


@extend_schema(
    parameters=[serializers.TickPageParams],
    responses=serializers.DeltaSerializer(many=True),
)
class DeltaListView(TickListView):
    """A market's order-book deltas in replay order; received_at in [start_time, end_time).

    Replay order is (received_at, session_id, seq), then sid, the order in
    which the collector received them.
    """

    selector = staticmethod(selectors.deltas_page)
    key_types = selectors.DELTA_KEY_TYPES
    serializer_class = serializers.DeltaSerializer


# --- Candles and the order book ----------------------------------------------------


class CandleView(HeavyEndpointMixin, APIView):
    """OHLC candles of a market's trade prices (yes side) over [start_time, end_time)."""

    serializer_class = serializers.CandlesSerializer
    heavy_name = "candles"

    def is_heavy(self, request) -> bool:
        """Over more than API_HEAVY_CANDLE_DAYS (or an open range) candles read many trades."""
        params = serializers.CandleParams(data=request.query_params)
        if not params.is_valid():
            return False  # get() answers the 400
        start, end = params.validated_data["start_time"], params.validated_data["end_time"]
        return end - start > timedelta(days=settings.API_HEAVY_CANDLE_DAYS)

    @extend_schema(parameters=[serializers.CandleParams])
    def get(self, request, ticker):
        params = parse_params(serializers.CandleParams, request)
        ticker = require_market(ticker)
        window = {"market_ticker": ticker, "interval": params["interval"],
                  "start": params["start_time"], "end": params["end_time"]}
        body = {
            "market_ticker": ticker,
            "interval": request.query_params.get("interval", "1m"),
            "start_time": params["start_time"],
            "end_time": params["end_time"],
        }
        if params["carry_forward"]:
            body["candles"] = candles.candles_for(**window, carry_forward=True)
            return Response(self.serializer_class(body).data)
        # PostgreSQL writes the candles' JSON (markets/candles.py, candles_json).
        body = self.serializer_class({**body, "candles": []}).data
        body["candles"] = RawJSON(candles.candles_json(**window))
        return Response(body)


class OrderbookView(APIView):
    """The order book of a market as it stood at `timestamp` (inclusive).

    Rebuilt from the latest snapshot or checkpoint at or before it plus the
    deltas after it, in arrival order. Inside a recorded gap the book is the
    last one known and `complete` is false; before the first data,
    `data_starts_at` says when the record starts.
    """

    serializer_class = serializers.OrderbookSerializer

    @extend_schema(parameters=[serializers.OrderbookParams])
    def get(self, request):
        params = parse_params(serializers.OrderbookParams, request)
        ticker = require_market(params["market_ticker"])
        try:
            result = selectors.orderbook_at(
                market_ticker=ticker, at=params["timestamp"],
                meter=WorkMeter(limit=settings.API_MAX_BOOK_DELTAS),
            )
        except WorkBudgetExceeded as exc:
            raise TooMuchWork(
                f"Rebuilding this book needs more than {exc.limit} deltas after the last "
                "snapshot (few checkpoints recorded); use /replay over the range instead."
            ) from None
        serializer = self.serializer_class(
            result, context={"depth": params.get("depth")}
        )
        return Response(serializer.data)


# --- Helpers --------------------------------------------------------------------------


def parse_params(params_class, request) -> dict:
    """Validated query parameters; a bad one is a 400 naming it."""
    params = params_class(data=request.query_params)
    params.is_valid(raise_exception=True)
    return params.validated_data


def storable(text: str) -> bool:
    """Whether PostgreSQL text could hold it (no NUL byte): else no row can match."""
    return "\x00" not in text


def require_market(ticker: str) -> str:
    """The ticker, if it is a market we know or hold data for; else a 404 naming it."""
    if not storable(ticker) or not selectors.market_known(ticker):
        raise NotFound(f"Unknown market ticker: {ticker}.")
    return ticker


# --- Root ---------------------------------------------------------------------

# (name shown, URL name) of every list endpoint, for the API root.
ROOT_LINKS = (
    ("markets", "market-list"),
    ("events", "event-list"),
    ("series", "series-list"),
    ("settlements", "settlement-list"),
    ("trades", "trade-list"),
    ("deltas", "delta-list"),
    ("orderbook", "orderbook"),
    ("replay", "replay"),
    ("book_snapshots", "book-snapshots"),
    ("coverage", "coverage"),
    ("exports", "export-list"),
)


class ApiRootView(APIView):
    """The entry point: links to every endpoint and to the documentation."""

    @extend_schema(
        responses={200: {"type": "object", "additionalProperties": {"type": "string"}}}
    )
    def get(self, request):
        links = {
            name: reverse(url_name, request=request) for name, url_name in ROOT_LINKS
        }
        links["schema"] = reverse("schema", request=request)
        links["docs"] = reverse("docs", request=request)
        links["explore"] = reverse("explore:home", request=request)  # the pages with charts
        return Response(links)
