"""Which markets to record, and their series -> event -> market metadata.

`Selection` is what the operator asked for (every open market, some series,
or some markets); `markets_discover` pages through GET /markets for it and
upserts every market; `hierarchy_discover` then fetches the events of those
markets and any series not stored yet. The collector subscribes to what
`markets_discover` returns and keeps the selection to decide whether a market
announced later by lifecycle `created` is wanted too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from markets.models import Event, Series
from markets.services import event_upsert, markets_upsert, series_upsert

from .db import run_db
from .rest import KalshiNotFound, KalshiRest

logger = logging.getLogger(__name__)

# Statuses GET /markets reports for markets that can still trade or settle;
# a finalized market has nothing left to record.
RECORDABLE_STATUSES = frozenset(
    {"initialized", "inactive", "active", "closed", "determined", "disputed", "amended"}
)
# "Open markets" means every market that is or will be trading: Kalshi
# sends no message when an unopened market opens or a paused one resumes,
# so their books must be subscribed from the start.
LIVE_STATUS_FILTERS = ("open", "unopened", "paused")
TICKERS_PER_REQUEST = 100  # GET /markets?tickers=A,B,... kept to a sane URL length
# Beyond this many unknown events (or series), one paged listing is cheaper
# than one request each.
BULK_FETCH_THRESHOLD = 20


@dataclass(frozen=True)
class Selection:
    """What to record: explicit markets and/or whole series, or (both empty) all open markets."""

    series: frozenset[str] = frozenset()
    markets: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, series: Iterable[str] = (), markets: Iterable[str] = ()) -> "Selection":
        return cls(frozenset(s for s in series if s), frozenset(m for m in markets if m))

    def __str__(self) -> str:
        parts = [f"{name}={','.join(sorted(values))}"
                 for name, values in (("markets", self.markets), ("series", self.series)) if values]
        return " ".join(parts) or "all open markets"

    @property
    def everything(self) -> bool:
        return not (self.markets or self.series)

    def wants(self, market_ticker: str, series_ticker: str = "") -> bool:
        """Whether a market announced after start-up belongs to the selection."""
        return self.everything or market_ticker in self.markets or series_ticker in self.series


async def markets_discover(
    rest: KalshiRest, selection: Selection, *, shard=None, combos: str = "exclude"
) -> list[dict]:
    """Every market of the selection that can still trade or settle, upserted.

    With a `shard` (collector/catalog.py), only the markets of its events are
    returned (all are upserted). Combo markets are listed only with
    `combos="include"` (else `mve_filter=exclude`).
    """
    found: list[dict] = []
    extra = {"mve_filter": "exclude"} if combos != "include" else {}
    if selection.markets:
        tickers = sorted(selection.markets)
        for i in range(0, len(tickers), TICKERS_PER_REQUEST):
            async for market in rest.markets(tickers=tickers[i : i + TICKERS_PER_REQUEST]):
                found.append(market)
        missing = selection.markets - {m["ticker"] for m in found}
        if missing:
            logger.warning("discovery unknown_markets=%s", ",".join(sorted(missing)))
    if selection.series or selection.everything:
        for series_ticker in sorted(selection.series) or [None]:
            for status in LIVE_STATUS_FILTERS:
                async for market in rest.markets(status=status, series_ticker=series_ticker, **extra):
                    found.append(market)

    # A market that changed status between two listings shows up twice.
    found = list({m["ticker"]: m for m in found}.values())
    recordable = [m for m in found if m.get("status", "active") in RECORDABLE_STATUSES]
    if shard is not None:
        recordable = [m for m in recordable if shard.owns(m.get("event_ticker") or "", m["ticker"])]
    await run_db(lambda: markets_upsert(markets=found))
    logger.info(
        "discovery selection=%r shard=%s markets=%d recordable=%d",
        str(selection), shard or "-", len(found), len(recordable),
    )
    return recordable


async def hierarchy_discover(rest: KalshiRest, event_tickers: Iterable[str]) -> None:
    """Fetch the events not stored yet, then the series none of them knows."""
    wanted = set(event_tickers)
    missing = wanted - set(await run_db(_known_events, wanted))
    if len(missing) > BULK_FETCH_THRESHOLD:
        events = [e async for e in rest.events(status="open") if e.get("event_ticker") in missing]
        await run_db(_events_upsert, events)
        missing -= {e["event_ticker"] for e in events}
    for event_ticker in sorted(missing):
        await event_fetch(rest, event_ticker)
    series_tickers = set(await run_db(_series_of_events, wanted))
    await series_fetch_missing(rest, series_tickers)


async def event_fetch(rest: KalshiRest, event_ticker: str) -> str | None:
    """Fetch and upsert one event; return its series ticker (None if unknown)."""
    try:
        event = await rest.event(event_ticker)
    except KalshiNotFound:
        logger.warning("discovery event=%s not found", event_ticker)
        return None
    await run_db(lambda: event_upsert(data=event))
    return event.get("series_ticker") or None


async def series_fetch_missing(rest: KalshiRest, series_tickers: Iterable[str]) -> None:
    """Fetch and upsert every series in `series_tickers` that is not stored yet."""
    wanted = {s for s in series_tickers if s}
    missing = wanted - set(await run_db(_known_series, wanted))
    if len(missing) > BULK_FETCH_THRESHOLD:
        listed = [s for s in await rest.series_list() if s.get("ticker") in missing]
        await run_db(_series_upsert_many, listed)
        missing -= {s["ticker"] for s in listed}
    for series_ticker in sorted(missing):
        try:
            series = await rest.series(series_ticker)
        except KalshiNotFound:
            logger.warning("discovery series=%s not found", series_ticker)
            continue
        await run_db(lambda: series_upsert(data=series))


def _events_upsert(events: list[dict]) -> None:
    for event in events:
        event_upsert(data=event)


def _series_upsert_many(series: list[dict]) -> None:
    for item in series:
        series_upsert(data=item)


def _known_events(tickers: set[str]) -> list[str]:
    return list(Event.objects.filter(event_ticker__in=tickers).values_list("event_ticker", flat=True))


def _series_of_events(tickers: set[str]) -> list[str]:
    return list(
        Event.objects.filter(event_ticker__in=tickers).values_list("series_ticker", flat=True).distinct()
    )


def _known_series(tickers: set[str]) -> list[str]:
    return list(Series.objects.filter(ticker__in=tickers).values_list("ticker", flat=True))
