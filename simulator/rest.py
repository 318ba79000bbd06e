"""The simulator's REST side: Kalshi's market-data endpoints under /trade-api/v2.

Bodies come from wire.py; this module does what Kalshi's REST does around
them: parameter validation (400 with Kalshi's error body), opaque cursors,
filters, the live/historical split at the cutoff, and 404s.

Cursors are keyset positions (the creation order of markets and events, the
execution order of trades), so paging stays exact while the exchange moves.
Trades are listed newest first, like Kalshi's.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Callable

from aiohttp import web

from kalshi import wire

from .catalog import Market
from .config import REST_PREFIX

if TYPE_CHECKING:
    from .simulator import Simulator

MARKETS_LIMIT = (0, 1000, 100)  # (min, max, default) per openapi 3.13
EVENTS_LIMIT = (1, 200, 200)
ORDERBOOK_DEPTH = (0, 100, 0)
ORDERBOOKS_MAX_TICKERS = 100
MARKET_STATUSES = {
    "unopened": {"initialized"},
    "open": {"active"},
    "paused": {"inactive"},
    "closed": {"closed", "determined", "disputed", "amended"},
    "settled": {"finalized"},
}


class BadRequest(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(Exception):
    pass


def error_response(status: int, code: str, message: str, details: str = "") -> web.Response:
    """Kalshi's error body (openapi 3.13 ErrorResponse)."""
    return web.json_response({"code": code, "message": message, "details": details}, status=status)


class RestApi:
    def __init__(self, sim: "Simulator"):
        self.sim = sim

    @property
    def fmt(self) -> str:
        return self.sim.config.wire_format

    def routes(self) -> list[web.RouteDef]:
        p = REST_PREFIX
        handlers: list[tuple[str, Callable]] = [
            ("/markets", self.markets),
            ("/markets/trades", self.trades),
            ("/markets/orderbooks", self.orderbooks),
            ("/markets/{ticker}", self.market),
            ("/markets/{ticker}/orderbook", self.orderbook),
            ("/events", self.events),
            ("/events/{event_ticker}", self.event),
            ("/series", self.series_list),
            ("/series/{series_ticker}", self.series),
            ("/historical/cutoff", self.cutoff),
            ("/historical/trades", self.historical_trades),
            ("/historical/markets", self.historical_markets),
            ("/historical/markets/{ticker}", self.historical_market),
        ]
        return [web.get(p + path, _guarded(handler)) for path, handler in handlers]

    # -- markets -------------------------------------------------------------------

    async def markets(self, request: web.Request) -> web.Response:
        q = request.query
        limit = _int(q, "limit", *MARKETS_LIMIT) or MARKETS_LIMIT[2]
        after = _cursor(q)
        if "min_updated_ts" in q and any(k in q for k in _MARKET_FILTERS if k != "min_updated_ts"):
            raise BadRequest("min_updated_ts cannot be combined with other filters")
        status = q.get("status")
        if status is not None and status not in MARKET_STATUSES:
            raise BadRequest(f"invalid status: {status}")
        if q.get("mve_filter") not in (None, "", "only", "exclude"):
            raise BadRequest("mve_filter: must be only or exclude")
        mve_filter = q.get("mve_filter") or None  # only: combos alone; exclude: no combos
        tickers = set(filter(None, q.get("tickers", "").split(","))) or None
        bounds = {k: _int(q, k, 0, 2**63 - 1, None) for k in _MARKET_TS_FILTERS}
        cutoff = self.sim.cutoff_ms()

        def keep(m: Market) -> bool:
            if mve_filter and m.is_combo != (mve_filter == "only"):
                return False
            if _is_historical(m, cutoff) or self._too_new(m):
                return False
            if status and m.status not in MARKET_STATUSES[status]:
                return False
            if q.get("event_ticker") and m.event_ticker != q["event_ticker"]:
                return False
            if q.get("series_ticker") and m.series_ticker != q["series_ticker"]:
                return False
            if tickers is not None and m.ticker not in tickers:
                return False
            return _within(m, bounds)

        return self._market_page(keep, after, limit)

    async def market(self, request: web.Request) -> web.Response:
        market = self._market(request.match_info["ticker"])
        if _is_historical(market, self.sim.cutoff_ms()) or self._too_new(market):
            raise NotFound()
        return web.json_response({"market": self._market_json(market)})

    async def orderbook(self, request: web.Request) -> web.Response:
        market = self._market(request.match_info["ticker"])
        depth = _int(request.query, "depth", *ORDERBOOK_DEPTH) or 0
        known = getattr(self.sim.exchange, "book_known", None)  # a replay inside a recorded hole
        if known is not None and not known(market.ticker):
            return error_response(503, "book_unknown", "no book of this market is recorded at this instant")
        book = self.sim.exchange.book(market.ticker)
        return web.json_response(wire.orderbook_json(book, depth=depth, fmt=self.fmt))

    async def orderbooks(self, request: web.Request) -> web.Response:
        tickers = request.query.getall("tickers", [])
        tickers = [t for value in tickers for t in value.split(",") if t]
        if not 1 <= len(tickers) <= ORDERBOOKS_MAX_TICKERS:
            raise BadRequest(f"tickers: between 1 and {ORDERBOOKS_MAX_TICKERS} required")
        books = []
        for ticker in tickers:
            market = self._market(ticker)
            body = wire.orderbook_json(self.sim.exchange.book(market.ticker), depth=0, fmt=self.fmt)
            books.append({"ticker": ticker, **body})
        return web.json_response({"orderbooks": books})

    # -- trades -----------------------------------------------------------------------

    async def trades(self, request: web.Request) -> web.Response:
        return self._trades(request, historical=False)

    async def historical_trades(self, request: web.Request) -> web.Response:
        return self._trades(request, historical=True)

    def _trades(self, request: web.Request, *, historical: bool) -> web.Response:
        q = request.query
        limit = _int(q, "limit", *MARKETS_LIMIT) or MARKETS_LIMIT[2]
        before = _cursor(q)
        min_ts = _int(q, "min_ts", 0, 2**63 - 1, None)
        max_ts = _int(q, "max_ts", 0, 2**63 - 1, None)
        ticker = q.get("ticker") or None
        cutoff = self.sim.cutoff_ms()
        page, more = [], False
        trades = self.sim.exchange.trades
        start = len(trades) - 1 if before is None else min(before - 1, len(trades) - 1)
        for i in range(start, -1, -1):  # newest first
            trade = trades[i]
            if (trade.ts_ms < cutoff) != historical:
                continue
            if ticker and trade.market_ticker != ticker:
                continue
            if min_ts is not None and trade.ts_ms < min_ts * 1000:
                continue
            if max_ts is not None and trade.ts_ms > max_ts * 1000:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(trade)
        cursor = _encode(page[-1].index) if more and page else ""
        return web.json_response(
            {"trades": [wire.trade_json(t, fmt=self.fmt) for t in page], "cursor": cursor}
        )

    # -- events and series ------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        limit = _int(q, "limit", *EVENTS_LIMIT) or EVENTS_LIMIT[2]
        after = _cursor(q)
        status = q.get("status")
        if status is not None and status not in ("unopened", "open", "closed", "settled"):
            raise BadRequest(f"invalid status: {status}")
        nested = _bool(q, "with_nested_markets")
        min_close = _int(q, "min_close_ts", 0, 2**63 - 1, None)
        cutoff = self.sim.cutoff_ms()
        by_event: dict[str, list[Market]] = {}  # one pass, not one per event (thousands of markets)
        for m in self.sim.exchange.markets.values():
            by_event.setdefault(m.event_ticker, []).append(m)
        page, more = [], False
        for event in sorted(self.sim.exchange.events.values(), key=lambda e: e.order):
            if after is not None and event.order <= after:
                continue
            if event.multivariate:  # Kalshi serves those under /events/multivariate
                continue
            if q.get("series_ticker") and event.series_ticker != q["series_ticker"]:
                continue
            markets = by_event.get(event.event_ticker, [])
            if status and _event_status(markets) != status:
                continue
            if min_close is not None and not any(m.close_ms > min_close * 1000 for m in markets):
                continue
            if len(page) == limit:
                more = True
                break
            live = (
                [self._market_json(m) for m in markets if not _is_historical(m, cutoff)] if nested else None
            )
            page.append((event, live))
        cursor = _encode(page[-1][0].order) if more else ""
        return web.json_response({"events": [wire.event_json(e, m) for e, m in page], "cursor": cursor})

    async def event(self, request: web.Request) -> web.Response:
        event = self.sim.exchange.events.get(request.match_info["event_ticker"])
        if event is None:
            raise NotFound()
        cutoff = self.sim.cutoff_ms()
        markets = [
            self._market_json(m)
            for m in self._event_markets(event.event_ticker)
            if not _is_historical(m, cutoff)
        ]
        nested = markets if _bool(request.query, "with_nested_markets") else None
        return web.json_response({"event": wire.event_json(event, nested), "markets": markets})

    async def series_list(self, request: web.Request) -> web.Response:
        q = request.query
        tags = set(filter(None, q.get("tags", "").split(",")))
        volume = _bool(q, "include_volume")
        out = []
        for series in self.sim.exchange.series.values():
            if q.get("category") and series.category != q["category"]:
                continue
            if tags and not tags & set(series.tags):
                continue
            out.append(
                wire.series_json(series, volume=self._series_volume(series.ticker) if volume else None)
            )
        return web.json_response({"series": out})

    async def series(self, request: web.Request) -> web.Response:
        series = self.sim.exchange.series.get(request.match_info["series_ticker"])
        if series is None:
            raise NotFound()
        volume = self._series_volume(series.ticker) if _bool(request.query, "include_volume") else None
        return web.json_response({"series": wire.series_json(series, volume=volume)})

    # -- historical ------------------------------------------------------------------

    async def cutoff(self, request: web.Request) -> web.Response:
        stamp = wire.iso(self.sim.cutoff_ms())
        return web.json_response(
            {
                "market_settled_ts": stamp,
                "trades_created_ts": stamp,
                "orders_updated_ts": stamp,
                "market_positions_last_updated_ts": stamp,
            }
        )

    async def historical_markets(self, request: web.Request) -> web.Response:
        q = request.query
        limit = _int(q, "limit", *MARKETS_LIMIT) or MARKETS_LIMIT[2]
        after = _cursor(q)
        chosen = [k for k in ("tickers", "event_ticker", "series_ticker", "mve_filter") if q.get(k)]
        if len(chosen) > 1:
            raise BadRequest("tickers, event_ticker, series_ticker and mve_filter are mutually exclusive")
        if q.get("mve_filter") not in (None, "", "exclude"):
            raise BadRequest("mve_filter: only 'exclude' is supported")
        tickers = set(filter(None, q.get("tickers", "").split(","))) or None
        cutoff = self.sim.cutoff_ms()

        def keep(m: Market) -> bool:
            return (
                _is_historical(m, cutoff)
                and (tickers is None or m.ticker in tickers)
                and (not q.get("event_ticker") or m.event_ticker == q["event_ticker"])
                and (not q.get("series_ticker") or m.series_ticker == q["series_ticker"])
            )

        return self._market_page(keep, after, limit)

    async def historical_market(self, request: web.Request) -> web.Response:
        market = self._market(request.match_info["ticker"])
        if not _is_historical(market, self.sim.cutoff_ms()):
            raise NotFound()
        return web.json_response({"market": self._market_json(market)})

    # -- helpers -----------------------------------------------------------------------

    def _market(self, ticker: str) -> Market:
        market = self.sim.exchange.markets.get(ticker)
        if market is None:
            raise NotFound()
        return market

    def _too_new(self, market: Market) -> bool:
        delay_ms = self.sim.config.new_market_rest_delay_s * 1000
        return delay_ms > 0 and self.sim.clock() - market.created_ms < delay_ms

    def _market_json(self, market: Market) -> dict:
        return wire.market_json(market, self.sim.exchange.book(market.ticker), fmt=self.fmt)

    def _market_page(self, keep, after, limit) -> web.Response:
        page, more = [], False
        for market in sorted(self.sim.exchange.markets.values(), key=lambda m: m.order):
            if after is not None and market.order <= after:
                continue
            if not keep(market):
                continue
            if len(page) == limit:
                more = True
                break
            page.append(market)
        cursor = _encode(page[-1].order) if more else ""
        return web.json_response({"markets": [self._market_json(m) for m in page], "cursor": cursor})

    def _event_markets(self, event_ticker: str) -> list[Market]:
        return [m for m in self.sim.exchange.markets.values() if m.event_ticker == event_ticker]

    def _series_volume(self, series_ticker: str):
        return sum(
            (m.volume for m in self.sim.exchange.markets.values() if m.series_ticker == series_ticker),
            start=0,
        )


_MARKET_TS_FILTERS = (
    "min_created_ts",
    "max_created_ts",
    "min_close_ts",
    "max_close_ts",
    "min_settled_ts",
    "max_settled_ts",
    "min_updated_ts",
)
_MARKET_FILTERS = _MARKET_TS_FILTERS + ("status", "event_ticker", "series_ticker", "tickers")


def _guarded(handler):
    """Turn BadRequest/NotFound into Kalshi's error bodies."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except BadRequest as exc:
            return error_response(400, "bad_request", exc.message)
        except NotFound:
            return error_response(404, "not_found", "not found")

    return wrapped


def _is_historical(market: Market, cutoff_ms: int) -> bool:
    return market.status == "finalized" and market.settled_ms is not None and market.settled_ms < cutoff_ms


def _within(m: Market, bounds: dict) -> bool:
    checks = (
        ("min_created_ts", m.created_ms, 1),
        ("max_created_ts", m.created_ms, -1),
        ("min_close_ts", m.close_ms, 1),
        ("max_close_ts", m.close_ms, -1),
        ("min_settled_ts", m.settled_ms, 1),
        ("max_settled_ts", m.settled_ms, -1),
        ("min_updated_ts", m.updated_ms, 1),
    )
    for name, value_ms, direction in checks:
        bound = bounds.get(name)
        if bound is None:
            continue
        if value_ms is None:
            return False
        if direction > 0 and value_ms < bound * 1000:
            return False
        if direction < 0 and value_ms > bound * 1000:
            return False
    return True


def _event_status(markets: list[Market]) -> str:
    statuses = {m.status for m in markets}
    if "active" in statuses or "inactive" in statuses:
        return "open"
    if statuses and statuses <= {"finalized"}:
        return "settled"
    if statuses & {"closed", "determined", "disputed", "amended", "finalized"}:
        return "closed"
    return "unopened"


def _int(query, name: str, low: int, high: int, default):
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}: not an integer: {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name}: must be between {low} and {high}")
    return value


def _bool(query, name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name}: must be true or false")
    return raw in ("true", "1")


def _encode(position: int) -> str:
    return base64.urlsafe_b64encode(f"sim:{position}".encode()).decode().rstrip("=")


def _cursor(query) -> int | None:
    raw = query.get("cursor")
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        prefix, position = text.split(":", 1)
        if prefix != "sim":
            raise ValueError
        return int(position)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor: invalid") from None
