"""An async client for Kalshi's REST market-data API (httpx).

Every request is signed (kalshi/auth.py) when a key is configured;
public endpoints work without one. Calls are paced by a client-side token
bucket and retried with exponential backoff and jitter on 429 (which carries
no Retry-After), on 5xx and on network errors; any other error status raises
`KalshiRestError` with Kalshi's code and message. Paginated lists are async
iterators that follow `cursor` until it is empty.

Base URLs include `/trade-api/v2`; the signed path is that prefix plus the
endpoint path, without host or query, as Kalshi specifies.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator
from urllib.parse import quote, urlsplit

import httpx

from kalshi import auth
from .backoff import TokenBucket, backoff_delays

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PAGE_LIMIT = 1000  # /markets, /markets/trades, /historical/trades
EVENTS_PAGE_LIMIT = 200  # /events refuses more
DEFAULT_TIMEOUT_S = 15.0
DEFAULT_MAX_ATTEMPTS = 8


class KalshiRestError(Exception):
    """Kalshi answered with an error we do not retry (or retries ran out)."""

    def __init__(self, status: int, path: str, code: str = "", message: str = ""):
        self.status = status
        self.path = path
        self.code = code
        self.message = message
        super().__init__(f"GET {path}: HTTP {status} {code} {message}".strip())


class KalshiNotFound(KalshiRestError):
    """HTTP 404: the ticker (or endpoint) does not exist, or not yet."""


class KalshiRest:
    """Kalshi REST market data. Use as `async with KalshiRest(...) as rest:`."""

    def __init__(
        self,
        *,
        base_url: str,
        key_id: str = "",
        private_key=None,
        rate_per_s: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_factor: float = 2.0,
        backoff_max: float = 30.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float = DEFAULT_TIMEOUT_S,
    ):
        self.base_url = base_url.rstrip("/")
        self._prefix = urlsplit(self.base_url).path.rstrip("/")
        self._key_id = key_id
        self._private_key = private_key
        self._bucket = TokenBucket(rate_per_s)
        self._backoff = dict(initial=backoff_initial, factor=backoff_factor, maximum=backoff_max)
        self._max_attempts = max_attempts
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        # Counters for logs and tests.
        self.requests = 0
        self.retries = 0

    @classmethod
    def from_config(cls, config, *, base_url: str, key_id: str = "", private_key=None) -> "KalshiRest":
        return cls(
            base_url=base_url,
            key_id=key_id,
            private_key=private_key,
            rate_per_s=config.rest_rate_per_s,
            backoff_initial=config.backoff_initial,
            backoff_factor=config.backoff_factor,
            backoff_max=config.backoff_max,
        )

    async def __aenter__(self) -> "KalshiRest":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # -- the one request path ---------------------------------------------------

    async def get(self, path: str, params: dict | None = None) -> dict:
        """GET `path` (relative to the base URL), paced, signed and retried."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        delays = backoff_delays(**self._backoff)
        for attempt in range(1, self._max_attempts + 1):
            await self._bucket.acquire()
            self.requests += 1
            try:
                response = await self._http.get(path, params=params, headers=self._headers(path))
            except httpx.TransportError as exc:
                status, reason = 0, f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRY_STATUSES:
                    raise _error(response, path)
                status, reason = response.status_code, f"HTTP {response.status_code}"
            if attempt == self._max_attempts:
                raise KalshiRestError(status, path, "retries_exhausted", f"{reason} after {attempt} attempts")
            delay = next(delays)
            self.retries += 1
            logger.info("rest retry path=%s reason=%r attempt=%d wait_s=%.2f", path, reason, attempt, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _headers(self, path: str) -> dict[str, str]:
        if not (self._key_id and self._private_key):
            return {}
        return auth.signed_headers(self._key_id, self._private_key, "GET", self._prefix + path)

    async def paginate(
        self, path: str, items_key: str, params: dict | None = None, *, limit: int = MAX_PAGE_LIMIT
    ) -> AsyncIterator[dict]:
        """Every item of a cursor-paginated list, page after page."""
        params = dict(params or {})
        params["limit"] = limit
        cursor = None
        while True:
            page = await self.get(path, {**params, "cursor": cursor} if cursor else params)
            for item in page.get(items_key) or []:
                yield item
            cursor = page.get("cursor")
            if not cursor:
                return

    # -- endpoints ---------------------------------------------------------------

    def markets(
        self,
        *,
        status: str | None = None,
        series_ticker: str | None = None,
        event_ticker: str | None = None,
        tickers: list[str] | None = None,
        **filters: Any,
    ) -> AsyncIterator[dict]:
        """GET /markets, every page. `tickers` is sent comma-separated, as Kalshi wants."""
        params = {
            "status": status,
            "series_ticker": series_ticker,
            "event_ticker": event_ticker,
            "tickers": ",".join(tickers) if tickers else None,
            **filters,
        }
        return self.paginate("/markets", "markets", params)

    def historical_markets(self, **filters: Any) -> AsyncIterator[dict]:
        """GET /historical/markets: markets settled before the cutoff, every page.

        Kalshi wants exactly one of `tickers`, `event_ticker`, `series_ticker`.
        """
        if isinstance(filters.get("tickers"), (list, tuple)):
            filters["tickers"] = ",".join(filters["tickers"])
        return self.paginate("/historical/markets", "markets", filters)

    async def market(self, ticker: str) -> dict:
        """GET /markets/{ticker} -> the Market object (KalshiNotFound if unknown)."""
        return (await self.get(f"/markets/{quote(ticker, safe='')}"))["market"]

    def events(self, **filters: Any) -> AsyncIterator[dict]:
        """GET /events, every page (at most 200 per page, Kalshi's cap)."""
        return self.paginate("/events", "events", filters, limit=EVENTS_PAGE_LIMIT)

    async def event(self, event_ticker: str) -> dict:
        """GET /events/{event_ticker} -> the EventData object."""
        return (await self.get(f"/events/{quote(event_ticker, safe='')}"))["event"]

    async def series_list(self, **filters: Any) -> list[dict]:
        """GET /series: every series in one response (it is not paginated)."""
        return (await self.get("/series", filters)).get("series") or []

    async def series(self, series_ticker: str) -> dict:
        """GET /series/{series_ticker} -> the Series object."""
        return (await self.get(f"/series/{quote(series_ticker, safe='')}"))["series"]

    def trades(
        self, *, ticker: str | None = None, min_ts: int | None = None, max_ts: int | None = None
    ) -> AsyncIterator[dict]:
        """GET /markets/trades (the live tier), every page; times are Unix seconds."""
        return self.paginate(
            "/markets/trades", "trades", {"ticker": ticker, "min_ts": min_ts, "max_ts": max_ts}
        )

    def historical_trades(
        self, *, ticker: str | None = None, min_ts: int | None = None, max_ts: int | None = None
    ) -> AsyncIterator[dict]:
        """GET /historical/trades (trades older than the cutoff), every page."""
        return self.paginate(
            "/historical/trades", "trades", {"ticker": ticker, "min_ts": min_ts, "max_ts": max_ts}
        )

    async def historical_cutoff(self) -> dict[str, datetime | None]:
        """GET /historical/cutoff, with its timestamps parsed to aware datetimes."""
        body = await self.get("/historical/cutoff")
        return {key: _parse_time(value) for key, value in body.items()}


def _error(response: httpx.Response, path: str) -> KalshiRestError:
    """Kalshi's error body is {code, message, details}; the 429 guide says {error}."""
    code = message = ""
    try:
        body = response.json()
    except ValueError:
        message = response.text[:200]
    else:
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):  # some gateways nest it
                body = error
                error = None
            code = str(body.get("code") or "")
            message = str(body.get("message") or error or body.get("details") or "")
    cls = KalshiNotFound if response.status_code == 404 else KalshiRestError
    return cls(response.status_code, path, code, message)


def _parse_time(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
