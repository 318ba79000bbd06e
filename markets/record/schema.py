"""The record's tables, each described once.

Every part of the project that moves rows of the high-volume record (the
collector's writer and its journal, the bulk loads, replay, the replay stream,
the pages of /deltas and /trades, the day files) takes a table's facts from
here: the column order of a row tuple, the column whose UTC day picks the
partition, the order in which one market's rows are replayed, and how a
journaled row is decoded. Change a row's shape here and nowhere else (how
deltas are packed for storage is markets/record/compact.py).

Replay order. The collector stamps every frame with a strictly increasing
`received_at` (markets/models/timeseries.py), so one market's rows are in the
order they arrived when sorted by `received_at`, then the WebSocket session,
then Kalshi's per-subscription `seq`; the last columns of each `replay_order`
only make the key unique (two subscriptions of one session never share a
frame, but old archives may lack sid and seq). A checkpoint shares the key
of the last delta it includes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from datetime import datetime
from decimal import Decimal

from django.db import models

from ..models import (
    LifecycleEvent,
    OrderbookDelta,
    OrderbookSnapshot,
    SequenceGap,
    StoredDelta,
    Trade,
)


@dataclass(frozen=True)
class RecordTable:
    """One table of the record: how its rows look and in which order they replay."""

    name: str  # the short name: the journal's and the day files' `type=`
    model: type[models.Model]
    columns: tuple[str, ...]  # a row tuple, as writers hand it over
    day_column: str  # the UTC day of this column is the row's partition (or day file)
    replay_order: tuple[str, ...]  # one market's rows, in the order they are replayed
    identity: tuple[str, ...]  # what makes a row the same row: stored once (ON CONFLICT)
    # The partitioned table that holds the rows, when `model` is a view over
    # it (deltas: markets/record/compact.py). Partitions, writes and drops go there.
    stored: type[models.Model] | None = None

    @property
    def db_table(self) -> str:
        """What readers query: the rows with `columns`."""
        return self.model._meta.db_table

    @property
    def stored_model(self) -> type[models.Model]:
        """The partitioned model: its partitions are the days (markets/partitioning.py)."""
        return self.stored or self.model

    @property
    def stored_table(self) -> str:
        return self.stored_model._meta.db_table

    def index(self, column: str) -> int:
        """Where `column` is in a row tuple."""
        return self.columns.index(column)

    def order_sql(self, alias: str = "") -> str:
        """`received_at, session_id, seq, sid`: an ORDER BY in replay order."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + column for column in self.replay_order)

    def after_sql(self, placeholders: tuple[str, ...] | None = None) -> str:
        """`(received_at, ...) > (%s, ...)`: rows after a key, in replay order (keyset)."""
        marks = placeholders or ("%s",) * len(self.replay_order)
        return f"({', '.join(self.replay_order)}) > ({', '.join(marks)})"

    def decode(self, row) -> tuple:
        """A row back from its JSON journal form (str for times and decimals)."""
        return tuple(decode(value) if value is not None else None
                     for decode, value in zip(self._decoders, row))

    @cached_property
    def _decoders(self) -> tuple:
        return tuple(_decoder(self.model._meta.get_field(c)) for c in self.columns)


def _keep(value):
    return value


def _decoder(field: models.Field):
    if isinstance(field, models.DecimalField):
        return Decimal
    if isinstance(field, models.DateTimeField):
        return datetime.fromisoformat
    return _keep


# The replay key shared by deltas and snapshots (a checkpoint has the key of
# the last delta it includes); each table's order adds a tie-breaker.
REPLAY_KEY = ("received_at", "session_id", "seq")

DELTAS = RecordTable(
    "deltas", OrderbookDelta,
    ("market_ticker", "received_at", "session_id", "sid", "seq", "side", "price", "delta", "ts"),
    "received_at",
    REPLAY_KEY + ("sid",),
    # One frame is one delta, and the collector stamps each frame of a
    # session with a strictly increasing received_at (StoredDelta's key).
    ("market_ticker", "received_at", "session_id"),
    stored=StoredDelta,
)
SNAPSHOTS = RecordTable(
    "snapshots", OrderbookSnapshot,
    ("market_ticker", "received_at", "session_id", "sid", "seq", "source", "yes_levels",
     "no_levels", "ts"),
    "received_at",
    REPLAY_KEY + ("source",),
    ("market_ticker", "received_at", "session_id", "seq", "source"),
)
TRADES = RecordTable(
    "trades", Trade,
    ("market_ticker", "ts", "trade_id", "yes_price", "no_price", "count", "taker_outcome_side",
     "taker_book_side", "taker_side", "is_block_trade", "received_at", "source"),
    # Partitioned by exchange time; replayed in receive order, so that a trade
    # backfilled late comes where it was learned (markets/replay_stream.py).
    "ts",
    ("received_at", "ts", "trade_id"),
    ("market_ticker", "ts", "trade_id"),
)
LIFECYCLE = RecordTable(
    "lifecycle", LifecycleEvent,
    ("market_ticker", "event_ticker", "event_type", "received_at", "ts", "session_id", "sid",
     "seq", "payload"),
    "received_at",
    REPLAY_KEY + ("id",),
    ("session_id", "sid", "seq", "market_ticker", "event_type", "received_at"),
)
GAPS = RecordTable(
    "gaps", SequenceGap,
    ("market_ticker", "channel", "reason", "session_id", "sid", "expected_seq", "received_seq",
     "detected_at", "recovered_at", "tickers_on_sid"),
    "detected_at",
    ("detected_at", "id"),
    ("market_ticker", "channel", "session_id", "detected_at"),
)

TABLES = {table.name: table for table in (DELTAS, SNAPSHOTS, TRADES, LIFECYCLE, GAPS)}
