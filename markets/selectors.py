"""Reads of the recorded data, for the API and anything else that serves it.

Each function is one question (a page of trades, what a market's record
covers) answered with as few queries as the question allows. Querysets are returned where callers filter and paginate further
(the hierarchy); the tick tables are read with keyset bounds through
markets/record/reads.py (PostgreSQL, and the Parquet lake for days moved
there), so a deep page costs the same as the first. Time ranges are half-open
[start, end) on each table's partition column, so PostgreSQL prunes
partitions. Writes live in ingest.py; the book at an instant in replay.py;
candles in candles.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Sequence

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from .models import (
    Event,
    Market,
    SequenceGap,
    Series,
    Settlement,
)
from .record.gaps import overlapping, overlaps
from .record import compact, packs, reads
from .record.reads import fetchall_binary  # noqa: F401 (used by callers of selectors)
from .record.schema import DELTAS, SNAPSHOTS, TRADES
from .replay import ONE_MICROSECOND, BookAt, WorkMeter, book_at


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
        event.markets = list(
            Market.objects.filter(event_ticker=event_ticker).order_by("ticker")
        )
    return event


def markets_list():
    return Market.objects.all()


def market_get(ticker: str) -> Market | None:
    return Market.objects.filter(ticker=ticker).first()


def settlements_list():
    return Settlement.objects.all()


def settlement_get(market_ticker: str) -> Settlement | None:
    return Settlement.objects.filter(market_ticker=market_ticker).first()


# --- Coverage -------------------------------------------------------------------


@dataclass
class Coverage:
    """What the record of one market holds: first/last instants and known gaps."""

    market_ticker: str
    first_delta_at: datetime | None = None
    last_delta_at: datetime | None = None
    first_trade_at: datetime | None = None
    last_trade_at: datetime | None = None
    gaps: list[SequenceGap] = field(default_factory=list)

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        """From the first to the last recorded instant of either table, if any."""
        firsts = [t for t in (self.first_delta_at, self.first_trade_at) if t]
        lasts = [t for t in (self.last_delta_at, self.last_trade_at) if t]
        return (min(firsts), max(lasts)) if firsts else None


def coverage_for(market_tickers: Sequence[str]) -> dict[str, Coverage]:
    """Coverage of each market, in two queries whatever the number of markets.

    Each bound is its own ORDER BY ... LIMIT 1 on the primary-key index (for
    packed deltas, on the chunks' index: markets/record/packs.py) (a
    handful of index probes per market), never an aggregate over the rows.
    Gaps listed are the market's own and the channel-wide ones (empty ticker,
    e.g. a lost trade connection) that fall inside its recorded span.
    """
    result = {t: Coverage(t) for t in market_tickers}
    if not market_tickers:
        return result
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT m.t,
              (SELECT received_at FROM {deltas} d WHERE d.{market}
                 ORDER BY received_at LIMIT 1),
              (SELECT received_at FROM {deltas} d WHERE d.{market}
                 ORDER BY received_at DESC LIMIT 1),
              (SELECT ts FROM trades r WHERE r.market_ticker = m.t ORDER BY ts LIMIT 1),
              (SELECT ts FROM trades r WHERE r.market_ticker = m.t ORDER BY ts DESC LIMIT 1),
              {lake_deltas}, {lake_trades}, {packed_deltas}
            FROM unnest(%s::text[]) AS m(t)
            """.format(deltas=packs.LOOSE_VIEW, market=compact.MARKET_OF_TICKER_SQL.format("m.t"),
                       packed_deltas=packs.bounds_sql(compact.MARKET_OF_TICKER_SQL.format("m.t")),
                       lake_deltas=reads.lake_bounds_sql(DELTAS, "m.t"),
                       lake_trades=reads.lake_bounds_sql(TRADES, "m.t")),
            [list(market_tickers)],
        )
        for ticker, first_d, last_d, first_t, last_t, *lake in cursor.fetchall():
            # Days moved to the lake count with their bounds kept at archiving.
            first_d, last_d = _widen(first_d, last_d, lake[0], lake[1])
            # So do packed days' (markets/record/packs.py).
            first_d, last_d = _widen(first_d, last_d, lake[4], lake[5])
            first_t, last_t = _widen(first_t, last_t, lake[2], lake[3])
            cov = result[ticker]
            cov.first_delta_at, cov.last_delta_at = first_d, last_d
            cov.first_trade_at, cov.last_trade_at = first_t, last_t
    # A span is closed, [first event, last event]: as a half-open one it ends
    # a microsecond (PostgreSQL's resolution) after its last event.
    spans = [(c.span[0], c.span[1] + ONE_MICROSECOND) for c in result.values() if c.span]
    if spans:
        wide = Q(market_ticker="") & overlapping(min(b for b, _ in spans), max(e for _, e in spans))
    else:
        wide = Q(pk__in=[])
    for gap in SequenceGap.objects.filter(Q(market_ticker__in=market_tickers) | wide):
        if gap.market_ticker:
            result[gap.market_ticker].gaps.append(gap)
            continue
        for cov in result.values():
            if cov.span and overlaps(gap, cov.span[0], cov.span[1] + ONE_MICROSECOND):
                cov.gaps.append(gap)
    return result


def _widen(first, last, other_first, other_last):
    firsts = [t for t in (first, other_first) if t]
    lasts = [t for t in (last, other_last) if t]
    return (min(firsts) if firsts else None), (max(lasts) if lasts else None)


# market_known answers are cached (the shared cache in production): a known
# market stays known; an unknown one may gain data, so it is asked again soon.
KNOWN_MARKET_TTL = 3600
UNKNOWN_MARKET_TTL = 30


def market_known(ticker: str) -> bool:
    """Whether the ticker is a market we know of or hold any record for.

    The market table answers first, with one index probe. Only a ticker it
    does not hold is looked for in the record, which probes every partition
    (about 160 ms with 1,250 of them): that answer is cached, so repeating
    an unknown ticker costs a cache read.
    """
    key = "market-known:" + hashlib.sha256(ticker.encode()).hexdigest()
    known = cache.get(key)
    if known is not None:
        return known
    known = Market.objects.filter(ticker=ticker).exists()
    if not known:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM orderbook_snapshots WHERE market_ticker = %s)"
                " OR EXISTS (SELECT 1 FROM trades WHERE market_ticker = %s)"
                " OR EXISTS (SELECT 1 FROM lake_market_days WHERE market_ticker = %s)",
                [ticker, ticker, ticker],
            )
            known = cursor.fetchone()[0]
    cache.set(key, known, KNOWN_MARKET_TTL if known else UNKNOWN_MARKET_TTL)
    return known


def first_snapshot_after(market_ticker: str, at: datetime) -> datetime | None:
    """When replayable data for the market starts after `at` (for "data starts at")."""
    found = reads.rows(SNAPSHOTS, market_ticker=market_ticker, columns=("received_at",),
                       order=("received_at",), after=(at,), where="source <> 'rest'", limit=1)
    return found[0][0] if found else None


# --- Trades and deltas ------------------------------------------------------------

TRADE_KEY = ("ts", "trade_id")
TRADE_KEY_TYPES = (datetime, str)
# A page of deltas is in replay order; its cursor is the full replay key.
DELTA_KEY = DELTAS.replay_order
DELTA_KEY_TYPES = (datetime, int, int, int)


@dataclass
class TradeRow:
    """A trade in TRADES.columns order (markets/record/schema.py)."""

    market_ticker: str
    ts: datetime
    trade_id: str
    yes_price: Decimal
    no_price: Decimal
    count: Decimal
    taker_outcome_side: str | None
    taker_book_side: str | None
    taker_side: str | None
    is_block_trade: bool
    received_at: datetime
    source: str

    @property
    def key(self) -> tuple:
        return (self.ts, self.trade_id)


@dataclass
class DeltaRow:
    """A delta in DELTAS.columns order (markets/record/schema.py)."""

    market_ticker: str
    received_at: datetime
    session_id: int
    sid: int
    seq: int
    side: str
    price: Decimal
    delta: Decimal
    ts: datetime | None

    @property
    def key(self) -> tuple:
        return tuple(getattr(self, column) for column in DELTA_KEY)


def trades_page(
    *,
    market_ticker: str,
    start: datetime | None = None,
    end: datetime | None = None,
    after: tuple | None = None,
    limit: int,
) -> list[TradeRow]:
    """Up to `limit` trades with start <= ts < end and (ts, trade_id) > after, in that order.

    Callers ask for one row more than they show to learn whether more exist.
    """
    found = reads.rows(TRADES, market_ticker=market_ticker, columns=TRADES.columns,
                       order=TRADE_KEY, start=start, end=end, after=after, limit=limit)
    return [TradeRow(*row) for row in found]


def deltas_page(
    *,
    market_ticker: str,
    start: datetime | None = None,
    end: datetime | None = None,
    after: tuple | None = None,
    limit: int,
) -> list[DeltaRow]:
    """Up to `limit` deltas with start <= received_at < end after `after`, in replay order."""
    found = reads.rows(DELTAS, market_ticker=market_ticker, columns=DELTAS.columns,
                       order=DELTA_KEY, start=start, end=end, after=after, limit=limit)
    return [DeltaRow(*row) for row in found]


# --- Order book at an instant --------------------------------------------------------


def orderbook_at(
    *, market_ticker: str, at: datetime, meter: WorkMeter | None = None
) -> tuple[BookAt, datetime | None]:
    """The book at `at` (replay.book_at) and, if there is no data yet, when it starts."""
    result = book_at(market_ticker, at, meter)
    starts = (
        first_snapshot_after(market_ticker, at) if result.snapshot is None else None
    )
    return result, starts


def with_coverage(markets: list[Market]) -> list[Market]:
    """The markets, each with `coverage` set (coverage_for, in two queries)."""
    coverage = coverage_for([m.ticker for m in markets])
    for market in markets:
        market.coverage = coverage[market.ticker]
    return markets


def market_with_coverage(ticker: str) -> Market | None:
    market = market_get(ticker)
    return with_coverage([market])[0] if market is not None else None
