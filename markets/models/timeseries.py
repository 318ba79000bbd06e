"""The high-volume record: order-book deltas and snapshots, trades, lifecycle,
and the gaps in that record.

Deltas, snapshots and trades are RANGE-partitioned by day on a time column
(django-postgres-extra; see markets/partitioning.py). Each has a natural
composite primary key that contains the partition column, so that loading
the same row twice stores it once (ON CONFLICT DO NOTHING) and the key doubles
as the per-market range-scan index.

Replay order. The collector stamps every frame it receives with a strictly
increasing `received_at` (its clock, clamped so it never goes back), so within
a market the order in which frames arrived is received_at, then the WebSocket
session, then Kalshi's per-subscription `seq` (markets/record/schema.py, where
each table's row shape and replay order are written once). A checkpoint
snapshot shares the key of the last delta it includes; the book at that key
is the snapshot, and only rows with a greater key are applied on top.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from psqlextra.models import PostgresPartitionedModel
from psqlextra.types import PostgresPartitioningMethod

from .fields import CountField, PriceField

class BookSide(models.TextChoices):
    YES = "yes"
    NO = "no"


class SnapshotSource(models.TextChoices):
    SUBSCRIBE = "subscribe", "sent by Kalshi on (re)subscribe"
    RESYNC = "resync", "asked for with get_snapshot after a gap"
    CHECKPOINT = "checkpoint", "written by the collector from its live book"
    REST = "rest", "fetched from REST (no sequence number: never replayed onto)"


class Trade(PostgresPartitionedModel):
    """One public trade, partitioned by its exchange time."""

    pk = models.CompositePrimaryKey("market_ticker", "ts", "trade_id")
    market_ticker = models.TextField()
    ts = models.DateTimeField(help_text="Exchange time of the trade (ts_ms / created_time).")
    trade_id = models.TextField()
    yes_price = PriceField()
    no_price = PriceField()
    count = CountField()
    taker_outcome_side = models.TextField(
        null=True, blank=True, help_text="yes: taker bought YES or sold NO; no: the opposite."
    )
    taker_book_side = models.TextField(
        null=True, blank=True, help_text="bid (same bit as yes) or ask (as no)."
    )
    taker_side = models.TextField(
        null=True, blank=True, help_text="Deprecated by Kalshi; kept for old archives."
    )
    is_block_trade = models.BooleanField(default=False)
    received_at = models.DateTimeField(help_text="When this service received or fetched it.")
    source = models.TextField(default="ws", help_text="ws, rest or historical.")

    class PartitioningMeta:
        method = PostgresPartitioningMethod.RANGE
        key = ["ts"]

    class Meta:
        db_table = "trades"
        indexes = [
            models.Index(fields=["trade_id"], name="trades_trade_id_idx"),
            # The replay stream reads a market's trades in receive order
            # (markets/replay_stream.py): late ones (a backfill) too, in
            # constant memory.
            models.Index(
                fields=["market_ticker", "received_at", "ts", "trade_id"],
                name="trades_received_idx",
            ),
        ]


class RecordMarket(models.Model):
    """A dense integer id per market ticker, so that delta rows and their key
    carry 4 bytes instead of the ticker's text (markets/record/compact.py).
    Ids are handed out as tickers first appear and never reused."""

    id = models.AutoField(primary_key=True)
    ticker = models.TextField(unique=True)

    class Meta:
        db_table = "record_markets"


class DeltaSide(models.IntegerChoices):
    YES = 1
    NO = 2


class StoredDelta(PostgresPartitionedModel):
    """How a delta is kept: fixed-point integers, the market's id, 8-byte columns first.

    Read it through OrderbookDelta (the `orderbook_deltas` view), which gives
    every column back as the record speaks it; write it through
    markets/ingest.py. Layout and key were chosen by measurement
    (bench/row_layout_bench.py, docs/storage.md): columns by alignment so no
    byte is padding, and a key that leads with the market (the Citus-ready
    rule) and holds only what makes a frame unique: the collector stamps
    every frame with a strictly increasing `received_at`, so one market
    never has two deltas at one instant of one session.
    """

    pk = models.CompositePrimaryKey("market_id", "received_at", "session_id")
    received_at = models.DateTimeField()
    session_id = models.BigIntegerField()
    seq = models.BigIntegerField()
    delta = models.BigIntegerField(help_text="Signed change in resting size, in 1/100 contract.")
    ts = models.DateTimeField(null=True, blank=True)
    market_id = models.IntegerField(help_text="RecordMarket.id")
    sid = models.IntegerField()
    price = models.IntegerField(help_text="No-leg price in 1/10,000 dollar.")
    side = models.SmallIntegerField(choices=DeltaSide.choices)

    class PartitioningMeta:
        method = PostgresPartitioningMethod.RANGE
        key = ["received_at"]

    class Meta:
        db_table = "orderbook_delta_rows"


class OrderbookDelta(models.Model):
    """One signed change to one price level, as received, in arrival order.

    A view (`orderbook_deltas`, markets/migrations/0007_compact_deltas.py)
    over StoredDelta and RecordMarket: every reader sees the ticker, exact
    decimals and the side's name, as Kalshi sent them.
    """

    pk = models.CompositePrimaryKey(
        "market_ticker", "received_at", "session_id", "sid", "seq"
    )
    market_ticker = models.TextField()
    received_at = models.DateTimeField(help_text="Our receive time; strictly increasing per collector.")
    session_id = models.BigIntegerField(
        help_text="The WebSocket connection the frame came on (its connect time in µs)."
    )
    sid = models.IntegerField(help_text="Kalshi's subscription id.")
    seq = models.BigIntegerField(help_text="Kalshi's sequence number within the sid.")
    side = models.TextField(choices=BookSide.choices)
    price = PriceField(help_text="No-leg pricing (use_yes_price=false), as Kalshi sends by default.")
    delta = CountField(help_text="Signed change in resting size at this price.")
    ts = models.DateTimeField(null=True, blank=True, help_text="Exchange time (ts_ms) when sent.")
    market_id = models.IntegerField(help_text="RecordMarket.id")

    class Meta:
        db_table = "orderbook_deltas"
        managed = False


class OrderbookSnapshot(PostgresPartitionedModel):
    """A whole book for one market at one point of the replay order.

    Levels are lists of [price, count] decimal strings, ascending by price
    (best bid last, as Kalshi's REST sends them); a side with no bids is [].
    """

    pk = models.CompositePrimaryKey(
        "market_ticker", "received_at", "session_id", "seq", "source"
    )
    market_ticker = models.TextField()
    received_at = models.DateTimeField()
    session_id = models.BigIntegerField(default=0, help_text="0 for REST snapshots.")
    sid = models.IntegerField(default=0)
    seq = models.BigIntegerField(
        default=0, help_text="The frame's seq, or for a checkpoint the last delta's seq."
    )
    source = models.TextField(choices=SnapshotSource.choices)
    yes_levels = models.JSONField(default=list)
    no_levels = models.JSONField(default=list)
    ts = models.DateTimeField(null=True, blank=True)

    class PartitioningMeta:
        method = PostgresPartitioningMethod.RANGE
        key = ["received_at"]

    class Meta:
        db_table = "orderbook_snapshots"


class LifecycleEvent(models.Model):
    """One market_lifecycle_v2 / event_lifecycle message, verbatim, as received.

    Low volume (a few per market), so not partitioned.
    """

    id = models.BigAutoField(primary_key=True)
    market_ticker = models.TextField(blank=True, default="")
    event_ticker = models.TextField(blank=True, default="")
    event_type = models.TextField(help_text="created, activated, determined, settled, ...")
    received_at = models.DateTimeField()
    ts = models.DateTimeField(null=True, blank=True, help_text="The message's own *_ts, if any.")
    session_id = models.BigIntegerField(default=0)
    sid = models.IntegerField(default=0)
    seq = models.BigIntegerField(default=0)
    payload = models.JSONField(default=dict)

    class Meta:
        db_table = "lifecycle_events"
        ordering = ["received_at", "id"]
        constraints = [
            # A journal replay or a re-sent frame must not store it twice.
            models.UniqueConstraint(
                fields=["session_id", "sid", "seq", "market_ticker", "event_type", "received_at"],
                name="lifecycle_events_frame_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["market_ticker", "received_at"], name="lifecycle_market_idx"),
            models.Index(fields=["event_ticker"], name="lifecycle_event_idx"),
        ]


class GapReason(models.TextChoices):
    SEQ_GAP = "seq_gap", "a sequence number was skipped"
    DISCONNECT = "disconnect", "the WebSocket connection was lost"
    TERMINAL_ERROR = "terminal_error", "Kalshi ended the subscription (error 10/25)"
    STARTUP = "startup", "collection was not running"
    CRASH = "crash", "the collector stopped uncleanly; rows after its last durable one may be lost"
    SUBSCRIBE_REFUSED = "subscribe_refused", "Kalshi refused to subscribe the market (e.g. error 26 or 18)"
    NOT_SUBSCRIBED = "not_subscribed", "the market was open before its first snapshot was recorded"
    INVALID_BOOK = "invalid_book", "a delta drove a level below zero or crossed the book: a message was lost"
    MALFORMED = "malformed", "a frame of the market's subscription could not be parsed"
    WRITER_FAILURE = "writer_failure", "rows could be neither written nor journaled (disk full, read-only)"


class SequenceGap(models.Model):
    """A hole in the record of one market: from detection until its book was re-baselined.

    One row per affected ticker: a gap on a sid is a gap for every ticker on it.
    Inside [detected_at, recovered_at) the stored book of that market is not
    reliable; recovered_at is set when a fresh snapshot arrives.
    """

    id = models.BigAutoField(primary_key=True)
    market_ticker = models.TextField(
        blank=True, default="", help_text="Empty for a channel-wide gap (trades, lifecycle)."
    )
    channel = models.TextField(default="orderbook_delta")
    reason = models.TextField(choices=GapReason.choices, default=GapReason.SEQ_GAP)
    session_id = models.BigIntegerField(default=0)
    sid = models.IntegerField(null=True, blank=True)
    expected_seq = models.BigIntegerField(null=True, blank=True)
    received_seq = models.BigIntegerField(null=True, blank=True)
    detected_at = models.DateTimeField()
    recovered_at = models.DateTimeField(null=True, blank=True)
    tickers_on_sid = ArrayField(models.TextField(), blank=True, default=list)

    class Meta:
        db_table = "sequence_gaps"
        ordering = ["detected_at", "id"]
        indexes = [
            models.Index(fields=["market_ticker", "detected_at"], name="gaps_market_idx"),
            models.Index(fields=["detected_at"], name="gaps_detected_idx"),
            # Closing a gap finds the open one of its market and channel: an
            # index over open gaps only, so it never scans a market's history.
            models.Index(
                fields=["market_ticker", "channel"],
                condition=models.Q(recovered_at__isnull=True),
                name="gaps_open_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["market_ticker", "channel", "session_id", "detected_at"],
                name="sequence_gaps_uniq",
            )
        ]
