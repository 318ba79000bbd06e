"""What the sync and async clients share: retries, errors, and the endpoints.

The endpoints are written once, in `Endpoints`, generic in what a list and
an object become (`Pages` and `dict` for `Client`, `AsyncPages` and an
awaitable `dict` for `AsyncClient`); each client supplies `_list` and
`_object`, the only places that do I/O.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, Sequence, TypeVar

import httpx

from ._convert import query, wire_date, wire_list, wire_time
from .errors import api_error

API_KEY_ENV = "KALSHI_DATA_API_KEY"
API_PREFIX = "/api/v1/"
USER_AGENT = "kalshi-data-client/0.1"
# The API's largest page: the fewest round trips for a lazy iterator.
MAX_PAGE = 1000

Time = datetime | date | str
Tickers = str | Sequence[str]


@dataclass(frozen=True)
class Retry:
    """When and how long to wait before sending a request again.

    429: wait what `Retry-After` says (at most `max_retry_after`). 5xx and
    connection errors: exponential backoff with full jitter, `backoff`
    seconds doubling up to `max_backoff`. After `max_retries` retries the
    error is raised.
    """

    max_retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if response is not None:
            if response.status_code == 429:
                after = _retry_after(response.headers.get("Retry-After"))
                if after is not None:
                    return min(after, self.max_retry_after)
            elif response.status_code < 500:
                return None
        ceiling = min(self.max_backoff, self.backoff * (2 ** attempt))
        return random.uniform(0, ceiling)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP date is allowed too.
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


def retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def raise_for_error(response: httpx.Response) -> None:
    """The typed exception for a non-2xx answer, from the API's error shape."""
    if response.status_code < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise api_error(response.status_code, body, response.headers.get("X-Request-ID"))


def base_headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def api_url(base_url: str) -> str:
    """The API root, whether `base_url` is the server or already ends in /api/v1."""
    base = base_url.rstrip("/")
    if base.endswith("/api/v1"):
        return base + "/"
    return base + API_PREFIX


L = TypeVar("L")  # what a list endpoint returns
O = TypeVar("O")  # what an object endpoint returns
B = TypeVar("B")  # what an endpoint returning a short list (candles, coverage) returns


class Endpoints(Generic[L, O, B]):
    """One method per endpoint of /api/v1/; times accept datetime, date or ISO strings."""

    def _list(self, path: str, params: dict[str, Any]) -> L:
        raise NotImplementedError

    def _object(self, path: str, params: dict[str, Any] | None = None) -> O:
        raise NotImplementedError

    def _inner_list(self, path: str, params: dict[str, Any], key: str) -> B:
        raise NotImplementedError

    # -- hierarchy ----------------------------------------------------------------------

    def markets(self, *, status: str | None = None, event_ticker: str | None = None,
                series_ticker: str | None = None, limit: int | None = None) -> L:
        """Markets by ticker, each with the coverage of its record (`GET /markets`)."""
        return self._list("markets", query(status=status, event_ticker=event_ticker,
                                           series_ticker=series_ticker, limit=limit))

    def market(self, ticker: str) -> O:
        """One market with its coverage (`GET /markets/{ticker}`)."""
        return self._object(f"markets/{ticker}")

    def events(self, *, series_ticker: str | None = None, status: str | None = None,
               category: str | None = None, limit: int | None = None) -> L:
        """Events with their market counts (`GET /events`)."""
        return self._list("events", query(series_ticker=series_ticker, status=status,
                                          category=category, limit=limit))

    def event(self, event_ticker: str) -> O:
        """One event with its markets nested (`GET /events/{event_ticker}`)."""
        return self._object(f"events/{event_ticker}")

    def series(self, *, category: str | None = None, limit: int | None = None) -> L:
        """Series (`GET /series`)."""
        return self._list("series", query(category=category, limit=limit))

    def series_detail(self, ticker: str) -> O:
        """One series (`GET /series/{ticker}`)."""
        return self._object(f"series/{ticker}")

    def settlements(self, *, event_ticker: str | None = None, result: str | None = None,
                    settled_after: Time | None = None, settled_before: Time | None = None,
                    limit: int | None = None) -> L:
        """Settlement results (`GET /settlements`), `settled_after <= settled_at < settled_before`."""
        return self._list("settlements", query(
            event_ticker=event_ticker, result=result, settled_after=wire_time(settled_after),
            settled_before=wire_time(settled_before), limit=limit))

    def settlement(self, market_ticker: str) -> O:
        """One market's settlement (`GET /settlements/{market_ticker}`)."""
        return self._object(f"settlements/{market_ticker}")

    # -- ticks --------------------------------------------------------------------------

    def trades(self, market_ticker: str, start_time: Time, end_time: Time, *,
               limit: int | None = None) -> L:
        """Trades with `start_time <= ts < end_time`, by `(ts, trade_id)` (`GET /trades`)."""
        return self._list("trades", query(market_ticker=market_ticker,
                                          start_time=wire_time(start_time),
                                          end_time=wire_time(end_time), limit=limit))

    def deltas(self, market_ticker: str, start_time: Time, end_time: Time, *,
               limit: int | None = None) -> L:
        """Book deltas received in `[start_time, end_time)`, in replay order (`GET /deltas`)."""
        return self._list("deltas", query(market_ticker=market_ticker,
                                          start_time=wire_time(start_time),
                                          end_time=wire_time(end_time), limit=limit))

    def orderbook(self, market_ticker: str, timestamp: Time, *, depth: int | None = None) -> O:
        """The book as it stood at `timestamp` (`GET /orderbook`)."""
        return self._object("orderbook", query(market_ticker=market_ticker,
                                               timestamp=wire_time(timestamp), depth=depth))

    def candles(self, market_ticker: str, interval: str, start_time: Time, end_time: Time, *,
                carry_forward: bool | None = None) -> B:
        """OHLC candles, volume and VWAP per bucket (`GET /candles/{ticker}`)."""
        return self._inner_list(f"candles/{market_ticker}", query(
            interval=interval, start_time=wire_time(start_time), end_time=wire_time(end_time),
            carry_forward=carry_forward), "candles")

    # -- bulk ---------------------------------------------------------------------------

    def book_snapshots(self, market_ticker: str, start_time: Time, end_time: Time,
                       interval: str, *, depth: int | None = None,
                       limit: int | None = None) -> L:
        """The top `depth` levels at every `interval` boundary (`GET /book_snapshots`)."""
        return self._list("book_snapshots", query(
            market_ticker=market_ticker, start_time=wire_time(start_time),
            end_time=wire_time(end_time), interval=interval, depth=depth, limit=limit))

    def coverage(self, market_ticker: str, start_date: Time, end_date: Time) -> B:
        """Per UTC day: complete, degraded, missing or pending, with counts (`GET /coverage`)."""
        return self._inner_list("coverage", query(
            market_ticker=market_ticker, start_date=wire_date(start_date),
            end_date=wire_date(end_date)), "days")

    def exports(self, *, type: str | None = None, file_format: str | None = None,
                start_date: Time | None = None, end_date: Time | None = None,
                limit: int | None = None) -> L:
        """The day files the server offers (`GET /exports`), by path."""
        return self._list("exports", query(
            type=type, file_format=file_format, start_date=wire_date(start_date),
            end_date=wire_date(end_date), limit=limit))


def replay_params(market_tickers: Tickers, start_time: Time, end_time: Time,
                  types: Tickers | None) -> dict[str, Any]:
    return query(market_tickers=wire_list(market_tickers), start_time=wire_time(start_time),
                 end_time=wire_time(end_time), types=wire_list(types))
