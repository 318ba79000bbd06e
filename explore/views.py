"""The explorer's pages: thin views that read through selectors and render.

Pages print what a list needs; the market page's charts, book, tape and
calendar are drawn by its script (static/explore/market.js) from the JSON
API itself (/api/v1/candles, /orderbook, /trades, /book_snapshots,
/coverage), so the page shows exactly what a client of the API gets. Access
follows the API's rule for browser sessions (session_may_read): staff, or
anyone when API_ALLOW_ANONYMOUS; others are sent to the admin's login.
"""

from __future__ import annotations

from datetime import timedelta
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from backtest_api.bulk_serializers import MAX_COVERAGE_DAYS
from backtest_api.permissions import session_may_read
from backtest_api.serializers import utc_iso
from markets import selectors as market_selectors
from markets.models import Market

from . import selectors

MARKETS_PER_PAGE = 50
# A market is followed live by its page when it is active and its record
# reaches this close to now.
LIVE_WITHIN = timedelta(minutes=15)


def readers_only(view):
    """Serve the page only to those who may read the API from a browser."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not session_may_read(request.user):
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return view(request, *args, **kwargs)

    return wrapped


def completeness(coverage) -> dict:
    """A badge for a market's record: none, complete, gaps or gap open."""
    if coverage.span is None:
        return {"status": "missing", "label": "no data"}
    if any(g.recovered_at is None for g in coverage.gaps):
        return {"status": "degraded", "label": "gap open"}
    if coverage.gaps:
        n = len(coverage.gaps)
        return {"status": "degraded", "label": f"{n} gap{'s' if n > 1 else ''}"}
    return {"status": "complete", "label": "complete"}


def _with_badges(markets: list[Market]) -> list[Market]:
    market_selectors.with_coverage(markets)
    for market in markets:
        market.badge = completeness(market.coverage)
    return markets


def not_found(request, what: str, ticker: str):
    return render(
        request, "explore/not_found.html", {"what": what, "ticker": ticker}, status=404
    )


@readers_only
def home(request):
    """Search: series, events and markets by ticker or title, with filters."""
    filters = {
        name: request.GET.get(name, "").strip()
        for name in ("q", "status", "category", "series")
    }
    markets = selectors.market_search(**filters)
    page = Paginator(markets, MARKETS_PER_PAGE).get_page(request.GET.get("page"))
    searching = bool(filters["q"] or filters["category"])
    context = {
        "filters": filters,
        "choices": selectors.filter_choices(),
        "page": page,
        "markets": _with_badges(list(page.object_list)),
        "series": (
            list(selectors.series_search(q=filters["q"], category=filters["category"])
                 [:selectors.SEARCH_LIMIT]) if searching else []
        ),
        "events": (
            list(selectors.event_search(q=filters["q"], category=filters["category"],
                                        series=filters["series"])[:selectors.SEARCH_LIMIT])
            if searching else []
        ),
        "query_without_page": _query_without(request, "page"),
    }
    return render(request, "explore/home.html", context)


@readers_only
def series_page(request, ticker):
    series = market_selectors.series_get(ticker)
    if series is None:
        return not_found(request, "series", ticker)
    events = list(selectors.event_search(series=ticker))
    return render(request, "explore/series.html", {"series": series, "events": events})


@readers_only
def event_page(request, ticker):
    """The event's markets side by side: last price, volume, result, record."""
    event = market_selectors.event_get(ticker)
    if event is None:
        return not_found(request, "event", ticker)
    markets = _with_badges(event.markets)
    stats = selectors.market_stats([m.ticker for m in markets])
    for market in markets:
        market.stats = stats[market.ticker]
    series = market_selectors.series_get(event.series_ticker) if event.series_ticker else None
    return render(
        request, "explore/event.html", {"event": event, "markets": markets, "series": series}
    )


@readers_only
def market_page(request, ticker):
    """The market's header; its script draws the rest from the JSON API."""
    market = market_selectors.market_get(ticker)
    if market is None:
        if not market_selectors.market_known(ticker):
            return not_found(request, "market", ticker)
        market = Market(ticker=ticker)  # data recorded, but no catalog row yet
    coverage = market_selectors.with_coverage([market])[0].coverage
    settlement = market_selectors.settlement_get(ticker)
    context = {
        "market": market,
        "badge": completeness(coverage),
        "coverage": coverage,
        "settlement": settlement,
        "config": market_config(request, market, coverage, settlement),
    }
    return render(request, "explore/market.html", context)


def market_config(request, market, coverage, settlement) -> dict:
    """What the market page's script needs: its API URLs, the record's span, gaps."""
    span = coverage.span
    config = {
        "ticker": market.ticker,
        "api": {
            "root": request.build_absolute_uri(reverse("api-root")),
            "candles": reverse("candles", kwargs={"ticker": market.ticker}),
            "orderbook": reverse("orderbook"),
            "trades": reverse("trade-list"),
            "deltas": reverse("delta-list"),
            "book_snapshots": reverse("book-snapshots"),
            "coverage": reverse("coverage"),
        },
        "start": utc_iso(span[0]) if span else None,
        "end": utc_iso(span[1]) if span else None,
        "at": request.GET.get("at") or None,
        "interval": request.GET.get("interval") or None,
        "gaps": [
            {"start": utc_iso(g.detected_at), "end": utc_iso(g.recovered_at),
             "reason": g.reason}
            for g in coverage.gaps
        ],
        "settlement": None,
        "calendar": None,
        "live": bool(span) and market.status == "active"
        and span[1] > timezone.now() - LIVE_WITHIN,
    }
    if settlement is not None:
        config["settlement"] = {
            "at": utc_iso(settlement.settled_at or settlement.determined_at),
            "result": settlement.result,
            "value": str(settlement.settlement_value)
            if settlement.settlement_value is not None else None,
        }
    if span:
        last_day = span[1].date()
        first_day = max(span[0].date(), last_day - timedelta(days=MAX_COVERAGE_DAYS - 1))
        config["calendar"] = {"start_date": first_day.isoformat(),
                              "end_date": last_day.isoformat()}
    return config


def _query_without(request, name: str) -> str:
    query = request.GET.copy()
    query.pop(name, None)
    return query.urlencode()
