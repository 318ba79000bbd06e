"""Rebuild a market's order book at any instant from the stored record.

The book at instant T is the latest snapshot (Kalshi's, or one of our
checkpoints) at or before T, plus every delta after that snapshot up to T,
applied in arrival order (the replay order of markets/record/schema.py). Checkpoints bound how many deltas
that is. REST snapshots carry no sequence number and are never used as a
starting point.

The book is *complete* unless T lies inside a recorded gap of that market
(between a gap's detection and the fresh snapshot that ended it). Inside a gap
the rebuilt book is the last one known before the gap; it is returned, marked
incomplete, with the gap.

This module is the one place that knows how to rebuild a book; the API's
order book, book snapshots at intervals (markets/book_snapshots.py) and the
replay event stream (markets/replay_stream.py) all build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterator

from django.db import connection

from .book import OrderBook
from .models import OrderbookSnapshot, SequenceGap
from .record.gaps import book_gap_at
from .record import reads
from .record.schema import DELTAS, SNAPSHOTS

ReplayKey = tuple[datetime, int, int]  # the values of schema.REPLAY_KEY
MIN_BIGINT = -(2**63)
MAX_BIGINT = 2**63 - 1
SNAPSHOT_BATCH_SIZE = 200  # snapshots per keyset batch: a deep book's levels are large
SNAPSHOT_KEY_BATCH_SIZE = 10_000  # replay keys per keyset batch
ONE_MICROSECOND = timedelta(microseconds=1)  # PostgreSQL's resolution
DELTA_BATCH_SIZE = 5000  # deltas per keyset batch when rebuilding a book
NOT_REST = "source <> 'rest'"  # REST snapshots carry no seq: never replayed onto


class WorkBudgetExceeded(Exception):
    """A read would apply more rows than its caller's WorkMeter allows."""

    def __init__(self, used: int, limit: int):
        super().__init__(f"{used} rows over a budget of {limit}")
        self.used, self.limit = used, limit


@dataclass
class WorkMeter:
    """Counts the rows a read applies and stops it past `limit`.

    The API gives each request one, so that the cost of rebuilding a book is
    bounded even for a market with few checkpoints (millions of deltas since
    its last snapshot); the collector and the stream pass none.
    """

    limit: int
    used: int = 0

    def add(self, rows: int = 1) -> None:
        self.used += rows
        if self.used > self.limit:
            raise WorkBudgetExceeded(self.used, self.limit)


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
    found = reads.rows(
        SNAPSHOTS, market_ticker=market_ticker, columns=SNAPSHOTS.columns,
        order=SNAPSHOTS.replay_order, until=at, where=NOT_REST, descending=True, limit=1)
    if not found:
        return None
    snapshot = OrderbookSnapshot(**dict(zip(SNAPSHOTS.columns, found[0])))
    snapshot.yes_levels = reads.levels(snapshot.yes_levels)
    snapshot.no_levels = reads.levels(snapshot.no_levels)
    return snapshot


def snapshot_key(snapshot: OrderbookSnapshot) -> ReplayKey:
    return (snapshot.received_at, snapshot.session_id, snapshot.seq)


def delta_rows(
    market_ticker: str, after: ReplayKey, until: datetime, *, batch_size: int,
    first_batch_size: int | None = None,
) -> Iterator[tuple]:
    """Deltas of the market with key > `after` and received_at <= `until`, in replay order.

    Yields (received_at, session_id, seq, sid, side, price, delta). Reads
    in keyset batches of `batch_size` rows (psycopg's default cursor would
    load the whole result into memory), so a long range costs constant
    memory. `sid` ends the ordering so that the keyset is total even if two
    subscriptions ever shared (received_at, session_id, seq). With
    `first_batch_size`, batches start that small and double up to
    `batch_size`: for callers that may stop after a few rows.
    """
    # Every sid of the `after` key itself is excluded: a checkpoint shares the
    # key of the last delta it includes.
    for batch in reads.batches(
        DELTAS, market_ticker=market_ticker, columns=_DELTA_COLUMNS, order=DELTAS.replay_order,
        start=after[0], until=until, after=(after[0], after[1], after[2], MAX_BIGINT),
        batch_size=batch_size, first_batch_size=first_batch_size,
    ):
        yield from batch


# No `ts`: nothing replayed needs it, and an archived day decodes every
# column it reads for a whole row group.
_DELTA_COLUMNS = DELTAS.replay_order + ("side", "price", "delta")


def gap_at(market_ticker: str, at: datetime) -> SequenceGap | None:
    """The latest recorded hole in this market's book record that `at` falls in."""
    return book_gap_at(market_ticker, at)


def book_at(market_ticker: str, at: datetime, meter: WorkMeter | None = None) -> BookAt:
    """The market's book as it stood at instant `at` (inclusive).

    With a `meter`, every delta applied counts against it (WorkBudgetExceeded).
    """
    snapshot = latest_snapshot(market_ticker, at)
    if snapshot is None:
        return BookAt(market_ticker, at, OrderBook(), None, 0, None, gap_at(market_ticker, at))
    book = OrderBook.from_levels(snapshot.yes_levels, snapshot.no_levels)
    last_key = snapshot_key(snapshot)
    applied, row = 0, None
    for row in delta_rows(market_ticker, last_key, at, batch_size=DELTA_BATCH_SIZE):
        book.apply_delta(row[4], row[5], row[6])  # side, price, delta
        applied += 1
        if meter is not None:
            meter.add()
    if row is not None:
        last_key = row[:3]  # (received_at, session_id, seq) of the last delta applied
    return BookAt(market_ticker, at, book, snapshot, applied, last_key, gap_at(market_ticker, at))


def keyset_batches(sql: str, params: list, first_key: tuple, key_of, batch_size: int):
    """Batches (lists) of rows of `sql`; `key_of(last row)` is the next batch's keyset.

    `sql` ends with the keyset's placeholders and then LIMIT's.
    """
    key = first_key
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, *key, batch_size])
            rows = cursor.fetchall()
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        key = key_of(rows[-1])


def stored_snapshots(
    market_ticker: str, start: datetime, end: datetime, *, batch_size: int = SNAPSHOT_BATCH_SIZE,
    parse: bool = True,
) -> Iterator[tuple]:
    """Replayable snapshots of a market with received_at in [start, end), in replay order.

    Yields (received_at, session_id, sid, seq, source, book, ts), the book
    normalised by OrderBook; REST snapshots are never replayed onto. With
    parse=False, `book` is a function that builds it, for callers that skip
    most snapshots (parsing a deep book's levels is the expensive part).
    """
    rows = _snapshot_rows(market_ticker, start, end, _SNAPSHOT_COLUMNS, batch_size)
    for received_at, session_id, seq, source, sid, yes, no, ts in rows:
        build = (lambda yes, no: lambda: OrderBook.from_levels(
            reads.levels(yes), reads.levels(no)))(yes, no)
        yield received_at, session_id, sid, seq, source, (build() if parse else build), ts


_SNAPSHOT_COLUMNS = SNAPSHOTS.replay_order + ("sid", "yes_levels", "no_levels", "ts")


def _snapshot_rows(market_ticker, start, end, columns, batch_size):
    for batch in reads.batches(
        SNAPSHOTS, market_ticker=market_ticker, columns=columns, order=SNAPSHOTS.replay_order,
        start=start, end=end, where=NOT_REST, batch_size=batch_size,
    ):
        yield from batch


def snapshot_keys(market_ticker: str, start: datetime, end: datetime) -> Iterator[ReplayKey]:
    """The replay keys of the market's replayable snapshots in [start, end), in order."""
    for received_at, session_id, seq, _source in _snapshot_rows(
        market_ticker, start, end, SNAPSHOTS.replay_order, SNAPSHOT_KEY_BATCH_SIZE
    ):
        yield received_at, session_id, seq
