"""Rebuild a market's order book at any instant from the stored record.

The book at instant T is the latest snapshot (Kalshi's, or one of our
checkpoints) at or before T, plus every delta after that snapshot up to T,
applied in arrival order (`REPLAY_ORDER`). Checkpoints bound how many deltas
that is. REST snapshots carry no sequence number and are never used as a
starting point.

The book is *complete* unless T lies inside a recorded gap of that market
(between a gap's detection and the fresh snapshot that ended it). Inside a gap
the rebuilt book is the last one known before the gap; it is returned, marked
incomplete, with the gap.

This module is the one place that knows how to replay; the API's order book,
book snapshots at intervals and the replay stream all build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterator

from django.db import connection
from django.db.models import Q

from .book import OrderBook
from .models import OrderbookSnapshot, SequenceGap, SnapshotSource

ReplayKey = tuple[datetime, int, int]  # (received_at, session_id, seq)
_MIN_BIGINT = -(2**63)
_MAX_BIGINT = 2**63 - 1


@dataclass
class BookAt:
    """The book of one market at one instant, and how it was obtained."""

    market_ticker: str
    at: datetime
    book: OrderBook
    snapshot: OrderbookSnapshot | None  # None: no data at or before `at`
    deltas_applied: int
    last_key: ReplayKey | None  # key of the last row applied (snapshot or delta)
    gap: SequenceGap | None  # the gap `at` falls in, if any

    @property
    def complete(self) -> bool:
        return self.snapshot is not None and self.gap is None


def latest_snapshot(market_ticker: str, at: datetime) -> OrderbookSnapshot | None:
    """The newest replayable snapshot of the market at or before `at`."""
    return (
        OrderbookSnapshot.objects.filter(market_ticker=market_ticker, received_at__lte=at)
        .exclude(source=SnapshotSource.REST)
        .order_by("-received_at", "-session_id", "-seq")
        .first()
    )


def snapshot_key(snapshot: OrderbookSnapshot) -> ReplayKey:
    return (snapshot.received_at, snapshot.session_id, snapshot.seq)


def iter_deltas(
    market_ticker: str, after: ReplayKey, until: datetime, *, batch_size: int = 5000
) -> Iterator[tuple[datetime, int, int, str, Decimal, Decimal, datetime | None]]:
    """Deltas of the market with key > `after` and received_at <= `until`, in replay order.

    Yields (received_at, session_id, seq, side, price, delta, ts). Reads in
    keyset batches of `batch_size` rows (psycopg's default cursor would load
    the whole result into memory), so a long range costs constant memory.
    """
    for row in _delta_rows(market_ticker, after, until, batch_size=batch_size):
        yield row[:3] + row[4:]


def _delta_rows(market_ticker: str, after: ReplayKey, until: datetime, *, batch_size: int):
    """(received_at, session_id, seq, sid, side, price, delta, ts) after `after`, up to `until`.

    `sid` ends the ordering so that the keyset is total even if two
    subscriptions ever shared (received_at, session_id, seq).
    """
    sql = (
        "SELECT received_at, session_id, seq, sid, side, price, delta, ts "
        "FROM orderbook_deltas "
        "WHERE market_ticker = %s AND received_at >= %s AND received_at <= %s "
        "AND (received_at, session_id, seq, sid) > (%s, %s, %s, %s) "
        "ORDER BY received_at, session_id, seq, sid LIMIT %s"
    )
    # Every sid of the `after` key itself is excluded: a checkpoint shares the
    # key of the last delta it includes.
    key = (after[0], after[1], after[2], _MAX_BIGINT)
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [market_ticker, key[0], until, *key, batch_size])
            rows = cursor.fetchall()
        yield from rows
        if len(rows) < batch_size:
            return
        key = rows[-1][:4]


def gap_at(market_ticker: str, at: datetime) -> SequenceGap | None:
    """The recorded gap of this market (or channel-wide) that `at` falls in."""
    return (
        SequenceGap.objects.filter(
            market_ticker=market_ticker, channel="orderbook_delta", detected_at__lte=at
        )
        .filter(Q(recovered_at__isnull=True) | Q(recovered_at__gt=at))
        .order_by("-detected_at")
        .first()
    )


def book_at(market_ticker: str, at: datetime) -> BookAt:
    """The market's book as it stood at instant `at` (inclusive)."""
    snapshot = latest_snapshot(market_ticker, at)
    if snapshot is None:
        return BookAt(market_ticker, at, OrderBook(), None, 0, None, gap_at(market_ticker, at))
    book = OrderBook.from_levels(snapshot.yes_levels, snapshot.no_levels)
    last_key = snapshot_key(snapshot)
    applied = 0
    for received_at, session_id, seq, side, price, delta, _ts in iter_deltas(
        market_ticker, last_key, at
    ):
        book.apply_delta(side, price, delta)
        last_key = (received_at, session_id, seq)
        applied += 1
    return BookAt(market_ticker, at, book, snapshot, applied, last_key, gap_at(market_ticker, at))
