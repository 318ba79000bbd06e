"""Input (query parameters) and output serializers of the backtest API.

Input serializers turn query strings into typed values and say which
parameter is wrong (a 400 naming it); output serializers print times as ISO
8601 UTC and prices/counts as Kalshi-style fixed-point strings.
"""

from __future__ import annotations

from datetime import timezone

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from markets.fixedpoint import format_count, format_price
from markets.candles import (
    MAX_CANDLE_BUCKETS,
    bucket_count,
    bucket_start,
    parse_interval,
)

from .pagination import DEFAULT_LIMIT, MAX_LIMIT

MAX_DEPTH = 1000  # price levels per side; a side has at most 10,000 (1/100 ticks)


def utc_iso(value):
    """ISO 8601 in UTC with a Z, or None."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class UtcDateTimeField(serializers.DateTimeField):
    """ISO 8601 in UTC with a Z, e.g. 2026-11-24T13:05:00.123456Z.

    On input a time without a zone is read as UTC (documented), so that
    `2026-11-24T13:05:00` means the same thing on every client.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("default_timezone", timezone.utc)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return utc_iso(value)


PRICE_SCHEMA = {"type": "string", "pattern": r"^-?\d+\.\d{4}$", "example": "0.5600"}
COUNT_SCHEMA = {"type": "string", "pattern": r"^-?\d+\.\d{2}$", "example": "136.00"}


@extend_schema_field(PRICE_SCHEMA)
class PriceStringField(serializers.Field):
    """A dollar price as Kalshi writes it: 4 decimals, e.g. "0.5600"."""

    def to_representation(self, value):
        return format_price(value)


@extend_schema_field(COUNT_SCHEMA)
class CountStringField(serializers.Field):
    """A contract count as Kalshi writes it: 2 decimals, e.g. "136.00"."""

    def to_representation(self, value):
        return format_count(value)


# --- Hierarchy ----------------------------------------------------------------


class SeriesSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField()
    frequency = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    settlement_sources = serializers.JSONField()
    contract_url = serializers.CharField()
    fee_type = serializers.CharField()
    fee_multiplier = serializers.DecimalField(
        max_digits=12, decimal_places=6, allow_null=True, coerce_to_string=True
    )
    updated_at = UtcDateTimeField()


class GapSerializer(serializers.Serializer):
    """A recorded hole: the record is unreliable in [detected_at, recovered_at)."""

    id = serializers.IntegerField()
    market_ticker = serializers.CharField(help_text="Empty for a channel-wide gap.")
    channel = serializers.CharField()
    reason = serializers.CharField()
    session_id = serializers.IntegerField()
    sid = serializers.IntegerField(allow_null=True)
    expected_seq = serializers.IntegerField(allow_null=True)
    received_seq = serializers.IntegerField(allow_null=True)
    detected_at = UtcDateTimeField()
    recovered_at = UtcDateTimeField(allow_null=True, help_text="Null while still open.")


class CoverageSerializer(serializers.Serializer):
    first_delta_at = UtcDateTimeField(allow_null=True)
    last_delta_at = UtcDateTimeField(allow_null=True)
    first_trade_at = UtcDateTimeField(allow_null=True)
    last_trade_at = UtcDateTimeField(allow_null=True)
    gaps = GapSerializer(many=True)


class MarketBriefSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    event_ticker = serializers.CharField()
    series_ticker = serializers.CharField()
    title = serializers.CharField()
    yes_sub_title = serializers.CharField()
    status = serializers.CharField()
    open_time = UtcDateTimeField(allow_null=True)
    close_time = UtcDateTimeField(allow_null=True)
    result = serializers.CharField()
    settlement_value = PriceStringField(allow_null=True)


class MarketSerializer(MarketBriefSerializer):
    market_type = serializers.CharField()
    no_sub_title = serializers.CharField()
    expected_expiration_time = UtcDateTimeField(allow_null=True)
    expiration_time = UtcDateTimeField(allow_null=True)
    price_level_structure = serializers.CharField()
    price_ranges = serializers.JSONField()
    strike_type = serializers.CharField()
    floor_strike = serializers.DecimalField(
        max_digits=24, decimal_places=8, allow_null=True
    )
    cap_strike = serializers.DecimalField(
        max_digits=24, decimal_places=8, allow_null=True
    )
    custom_strike = serializers.JSONField(allow_null=True)
    can_close_early = serializers.BooleanField(allow_null=True)
    rules_primary = serializers.CharField()
    rules_secondary = serializers.CharField()
    updated_at = UtcDateTimeField()
    coverage = CoverageSerializer(help_text="What the record of this market holds.")


class EventSerializer(serializers.Serializer):
    event_ticker = serializers.CharField()
    series_ticker = serializers.CharField()
    title = serializers.CharField()
    sub_title = serializers.CharField()
    category = serializers.CharField()
    status = serializers.CharField()
    mutually_exclusive = serializers.BooleanField(allow_null=True)
    collateral_return_type = serializers.CharField()
    strike_date = UtcDateTimeField(allow_null=True)
    strike_period = serializers.CharField()
    market_count = serializers.IntegerField()
    updated_at = UtcDateTimeField()


class EventDetailSerializer(EventSerializer):
    markets = MarketBriefSerializer(many=True)


class SettlementSerializer(serializers.Serializer):
    market_ticker = serializers.CharField()
    event_ticker = serializers.CharField()
    result = serializers.CharField()
    settlement_value = PriceStringField(allow_null=True)
    determined_at = UtcDateTimeField(allow_null=True)
    settled_at = UtcDateTimeField(allow_null=True)
    source = serializers.CharField()


# --- Query parameters ---------------------------------------------------------------


class TimeRangeParams(serializers.Serializer):
    """start_time inclusive, end_time exclusive; an inverted range names end_time."""

    start_time = UtcDateTimeField(
        required=False, help_text="Inclusive, ISO 8601 (UTC if no zone)."
    )
    end_time = UtcDateTimeField(
        required=False, help_text="Exclusive, ISO 8601 (UTC if no zone)."
    )

    def validate(self, attrs):
        start, end = attrs.get("start_time"), attrs.get("end_time")
        if start is not None and end is not None and end <= start:
            raise serializers.ValidationError({"end_time": "Must be after start_time."})
        return attrs


class TickPageParams(TimeRangeParams):
    market_ticker = serializers.CharField(
        max_length=200, help_text="The market's ticker."
    )
    cursor = serializers.CharField(
        required=False, help_text="next_cursor of the previous page."
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_LIMIT,
        default=DEFAULT_LIMIT,
        help_text=f"Rows per page, 1..{MAX_LIMIT}.",
    )


class OrderbookParams(serializers.Serializer):
    market_ticker = serializers.CharField(max_length=200)
    timestamp = UtcDateTimeField(
        help_text="The instant, ISO 8601 (UTC if no zone); inclusive."
    )
    depth = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_DEPTH,
        help_text="Levels per side, best first (default: all).",
    )


class CandleParams(TimeRangeParams):
    interval = serializers.CharField(
        default="1m", help_text="N minutes, hours or days: 1m, 5m, 15m, 1h, 4h, 1d ..."
    )
    carry_forward = serializers.BooleanField(
        default=False, help_text="Emit empty buckets carrying the last close forward."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["start_time"].required = True
        self.fields["end_time"].required = True

    def validate_interval(self, value):
        try:
            return parse_interval(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        attrs = super().validate(attrs)
        start, end, interval = attrs["start_time"], attrs["end_time"], attrs["interval"]
        # Buckets are aligned, so they can reach past the range a datetime
        # holds (years 1 to 9999) even when the range itself does not.
        try:
            first = bucket_start(start, interval)
        except OverflowError:
            raise serializers.ValidationError(
                {"start_time": "Too early: its bucket would start before year 1."}
            ) from None
        buckets = bucket_count(start, end, interval)
        try:
            first + buckets * interval
        except OverflowError:
            raise serializers.ValidationError(
                {"end_time": "Too late: its bucket would end after year 9999."}
            ) from None
        if buckets > MAX_CANDLE_BUCKETS:
            raise serializers.ValidationError(
                {
                    "interval": f"{buckets} buckets in this range; at most {MAX_CANDLE_BUCKETS}."
                    " Use a longer interval or a shorter range."
                }
            )
        return attrs


# --- Trades and deltas -----------------------------------------------------------------


class TradeSerializer(serializers.Serializer):
    market_ticker = serializers.CharField()
    trade_id = serializers.CharField()
    ts = UtcDateTimeField(help_text="Exchange time.")
    yes_price = PriceStringField()
    no_price = PriceStringField()
    count = CountStringField()
    taker_outcome_side = serializers.CharField(allow_null=True)
    taker_book_side = serializers.CharField(allow_null=True)
    taker_side = serializers.CharField(
        allow_null=True, help_text="Deprecated by Kalshi."
    )
    is_block_trade = serializers.BooleanField()
    received_at = UtcDateTimeField()
    source = serializers.CharField()

    def to_representation(self, row):
        # A page is up to 1000 rows; building the dict directly is several
        # times faster than DRF's field-by-field loop, with the same output.
        return {
            "market_ticker": row.market_ticker,
            "trade_id": row.trade_id,
            "ts": utc_iso(row.ts),
            "yes_price": format_price(row.yes_price),
            "no_price": format_price(row.no_price),
            "count": format_count(row.count),
            "taker_outcome_side": row.taker_outcome_side,
            "taker_book_side": row.taker_book_side,
            "taker_side": row.taker_side,
            "is_block_trade": row.is_block_trade,
            "received_at": utc_iso(row.received_at),
            "source": row.source,
        }


class DeltaSerializer(serializers.Serializer):
    market_ticker = serializers.CharField()
    received_at = UtcDateTimeField(
        help_text="Our receive time; replay order starts here."
    )
    session_id = serializers.IntegerField()
    sid = serializers.IntegerField()
    seq = serializers.IntegerField()
    side = serializers.ChoiceField(choices=["yes", "no"])
    price = PriceStringField(help_text="No-leg pricing: each side at its own price.")
    delta = CountStringField(help_text="Signed change in resting size.")
    ts = UtcDateTimeField(allow_null=True, help_text="Exchange time, when sent.")

    def to_representation(self, row):
        # See TradeSerializer.to_representation.
        return {
            "market_ticker": row.market_ticker,
            "received_at": utc_iso(row.received_at),
            "session_id": row.session_id,
            "sid": row.sid,
            "seq": row.seq,
            "side": row.side,
            "price": format_price(row.price),
            "delta": format_count(row.delta),
            "ts": utc_iso(row.ts),
        }


# --- Candles ---------------------------------------------------------------------------


class CandleSerializer(serializers.Serializer):
    start = UtcDateTimeField(help_text="Bucket start (inclusive).")
    end = UtcDateTimeField(help_text="Bucket end (exclusive).")
    open = PriceStringField(help_text="Yes price of the first trade.")
    high = PriceStringField()
    low = PriceStringField()
    close = PriceStringField(help_text="Yes price of the last trade.")
    volume = CountStringField(help_text="Contracts traded.")
    trade_count = serializers.IntegerField()
    vwap = PriceStringField(allow_null=True, help_text="Null when no trade (carried).")
    yes_taker_volume = CountStringField()
    no_taker_volume = CountStringField()
    carried_forward = serializers.BooleanField(
        help_text="True for an empty, carried bucket."
    )

    def to_representation(self, candle):
        # A day of 1-minute candles is 1,440 of these: the same formatting as
        # the fields above, without DRF's per-field dispatch (which cost more
        # than reading the candles; bench/api_bench.py).
        vwap = candle.vwap
        return {
            "start": utc_iso(candle.start),
            "end": utc_iso(candle.end),
            "open": format_price(candle.open),
            "high": format_price(candle.high),
            "low": format_price(candle.low),
            "close": format_price(candle.close),
            "volume": format_count(candle.volume),
            "trade_count": candle.trade_count,
            "vwap": None if vwap is None else format_price(vwap),
            "yes_taker_volume": format_count(candle.yes_taker_volume),
            "no_taker_volume": format_count(candle.no_taker_volume),
            "carried_forward": candle.carried_forward,
        }


class CandlesSerializer(serializers.Serializer):
    market_ticker = serializers.CharField()
    interval = serializers.CharField()
    start_time = UtcDateTimeField()
    end_time = UtcDateTimeField()
    candles = CandleSerializer(many=True)


# --- Order book --------------------------------------------------------------------------


class LevelSerializer(serializers.Serializer):
    price = PriceStringField()
    quantity = CountStringField()

    def to_representation(self, level):
        return {"price": format_price(level[0]), "quantity": format_count(level[1])}


class SnapshotRefSerializer(serializers.Serializer):
    received_at = UtcDateTimeField()
    session_id = serializers.IntegerField()
    seq = serializers.IntegerField()
    source = serializers.CharField(help_text="subscribe, resync or checkpoint.")


class ReplayKeySerializer(serializers.Serializer):
    received_at = UtcDateTimeField()
    session_id = serializers.IntegerField()
    seq = serializers.IntegerField()

    def to_representation(self, key):
        return {"received_at": utc_iso(key[0]), "session_id": key[1], "seq": key[2]}


class BestPricesSerializer(serializers.Serializer):
    yes_bid = LevelSerializer(allow_null=True)
    yes_ask = LevelSerializer(allow_null=True, help_text="1 - best no bid.")
    no_bid = LevelSerializer(allow_null=True)
    no_ask = LevelSerializer(allow_null=True, help_text="1 - best yes bid.")


class OrderbookSerializer(serializers.Serializer):
    """Built from (BookAt, data_starts_at) and the requested depth (context)."""

    market_ticker = serializers.CharField()
    timestamp = UtcDateTimeField()
    complete = serializers.BooleanField(
        help_text="False without data yet, or inside a recorded gap (see gap)."
    )
    gap = GapSerializer(allow_null=True)
    data_starts_at = UtcDateTimeField(
        allow_null=True, help_text="With no data at timestamp: when the record starts."
    )
    snapshot = SnapshotRefSerializer(
        allow_null=True, help_text="The snapshot replayed from."
    )
    deltas_applied = serializers.IntegerField()
    last_update = ReplayKeySerializer(
        allow_null=True, help_text="Key of the last row applied."
    )
    yes = LevelSerializer(many=True, help_text="Yes bids, best first.")
    no = LevelSerializer(many=True, help_text="No bids, best first.")
    best = BestPricesSerializer()

    def to_representation(self, value):
        result, data_starts_at = value
        depth = self.context.get("depth")
        book = result.book
        level = LevelSerializer()
        best = {
            "yes_bid": book.best_bid("yes"),
            "yes_ask": book.best_ask("yes"),
            "no_bid": book.best_bid("no"),
            "no_ask": book.best_ask("no"),
        }
        return {
            "market_ticker": result.market_ticker,
            "timestamp": utc_iso(result.at),
            "complete": result.complete,
            "gap": GapSerializer(result.gap).data if result.gap else None,
            "data_starts_at": utc_iso(data_starts_at),
            "snapshot": (
                SnapshotRefSerializer(result.snapshot).data if result.snapshot else None
            ),
            "deltas_applied": result.deltas_applied,
            "last_update": (
                ReplayKeySerializer().to_representation(result.last_key)
                if result.last_key
                else None
            ),
            "yes": [level.to_representation(lv) for lv in book.levels("yes", depth)],
            "no": [level.to_representation(lv) for lv in book.levels("no", depth)],
            "best": {
                k: level.to_representation(v) if v else None for k, v in best.items()
            },
        }
