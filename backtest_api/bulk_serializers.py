"""Query parameters and outputs of the bulk-data endpoints.

Replay stream, book snapshots at an interval, coverage per day, and the
export files. Kept apart from serializers.py so that each half of the API
can grow without the other's edits.
"""

from __future__ import annotations

from datetime import datetime, timezone

from rest_framework import serializers

from markets.book_snapshots import parse_interval
from markets.export import FORMATS, TABLE_NAMES
from markets.replay_stream import STREAM_TYPES

from .pagination import DEFAULT_LIMIT, MAX_LIMIT
from .serializers import GapSerializer, LevelSerializer, TimeRangeParams, UtcDateTimeField

MAX_REPLAY_MARKETS = 50
MAX_SNAPSHOT_DEPTH = 100
DEFAULT_SNAPSHOT_DEPTH = 10
MAX_COVERAGE_DAYS = 366
# Instants a request may name. Far inside what a datetime holds (years 1 to
# 9999), so that stepping a day or an interval around them never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)
OUTSIDE_RANGE = f"Must be from {EARLIEST.date()} to {LATEST.date()}."


def _comma_list(value: str, *, allowed=None, maximum=None, what="value") -> list[str]:
    items = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not items:
        raise serializers.ValidationError(f"Give at least one {what}.")
    if maximum is not None and len(items) > maximum:
        raise serializers.ValidationError(f"At most {maximum} {what}s; got {len(items)}.")
    if allowed is not None:
        unknown = [i for i in items if i not in allowed]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown {what}: {', '.join(unknown)}; choose from {', '.join(allowed)}."
            )
    return items


class RejectEmpty:
    """A parameter sent empty (`?type=`) is a 400, not "no filter" (as in filters.py)."""

    def to_internal_value(self, data):
        empty = [name for name in self.fields if name in data and data.get(name) == ""]
        if empty:
            raise serializers.ValidationError(
                {empty[0]: ["Must not be empty; leave the parameter out instead."]})
        return super().to_internal_value(data)


class RequiredTimeRangeParams(RejectEmpty, TimeRangeParams):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["start_time"].required = True
        self.fields["end_time"].required = True

    def validate(self, attrs):
        for name in ("start_time", "end_time"):
            if not EARLIEST <= attrs[name] <= LATEST:
                raise serializers.ValidationError({name: OUTSIDE_RANGE})
        return super().validate(attrs)


# --- Replay -------------------------------------------------------------------------


class ReplayParams(RequiredTimeRangeParams):
    market_tickers = serializers.CharField(
        max_length=20_000,
        help_text=f"Comma-separated market tickers (at most {MAX_REPLAY_MARKETS}).",
    )
    types = serializers.CharField(
        default=",".join(STREAM_TYPES),
        help_text=f"Comma-separated subset of {', '.join(STREAM_TYPES)} (default: all).",
    )

    def validate_market_tickers(self, value):
        tickers = _comma_list(value, maximum=MAX_REPLAY_MARKETS, what="market ticker")
        too_long = [t for t in tickers if len(t) > 200]
        if too_long:
            raise serializers.ValidationError("A ticker is at most 200 characters.")
        return tickers

    def validate_types(self, value):
        return _comma_list(value, allowed=STREAM_TYPES, what="type")


# --- Book snapshots -------------------------------------------------------------------


class BookSnapshotParams(RequiredTimeRangeParams):
    market_ticker = serializers.CharField(max_length=200)
    interval = serializers.CharField(help_text="1s to 1d: e.g. 1s, 10s, 1m, 15m, 1h, 1d.")
    depth = serializers.IntegerField(
        default=DEFAULT_SNAPSHOT_DEPTH, min_value=1, max_value=MAX_SNAPSHOT_DEPTH,
        help_text=f"Levels per side, best first (1..{MAX_SNAPSHOT_DEPTH}).",
    )
    cursor = serializers.CharField(required=False, help_text="next_cursor of the previous page.")
    limit = serializers.IntegerField(
        default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT,
        help_text=f"Points per page, 1..{MAX_LIMIT}.",
    )

    def validate_interval(self, value):
        try:
            return parse_interval(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class BookPointSerializer(serializers.Serializer):
    """The top of the book at one boundary (a markets.book_snapshots.BookPoint)."""

    timestamp = UtcDateTimeField(source="at")
    complete = serializers.BooleanField(
        help_text="False before the first snapshot, or inside a recorded gap (see gap)."
    )
    gap = GapSerializer(allow_null=True)
    last_update = UtcDateTimeField(allow_null=True, help_text="Receive time of the last change.")
    yes = LevelSerializer(many=True, help_text="Yes bids, best first.")
    no = LevelSerializer(many=True, help_text="No bids, best first.")
    best = serializers.SerializerMethodField()

    def get_best(self, point) -> dict:
        level = LevelSerializer()
        return {
            name: level.to_representation(value) if value else None
            for name, value in (("yes_bid", point.yes_bid), ("yes_ask", point.yes_ask),
                                ("no_bid", point.no_bid), ("no_ask", point.no_ask))
        }


# --- Coverage ---------------------------------------------------------------------------


class CoverageParams(RejectEmpty, serializers.Serializer):
    market_ticker = serializers.CharField(max_length=200)
    start_date = serializers.DateField(help_text="First UTC day, YYYY-MM-DD.")
    end_date = serializers.DateField(help_text="Last UTC day, included.")

    def validate(self, attrs):
        for name in ("start_date", "end_date"):
            if not EARLIEST.date() <= attrs[name] <= LATEST.date():
                raise serializers.ValidationError({name: OUTSIDE_RANGE})
        days = (attrs["end_date"] - attrs["start_date"]).days + 1
        if days < 1:
            raise serializers.ValidationError({"end_date": "Must not be before start_date."})
        if days > MAX_COVERAGE_DAYS:
            raise serializers.ValidationError(
                {"end_date": f"At most {MAX_COVERAGE_DAYS} days per request; got {days}."}
            )
        return attrs


class CoverageGapSerializer(GapSerializer):
    """A gap as everywhere in the API, plus its start, end and duration by those names."""

    start = UtcDateTimeField(source="detected_at")
    end = UtcDateTimeField(source="recovered_at", allow_null=True, help_text="Null while open.")
    duration_seconds = serializers.SerializerMethodField(
        help_text="Null while the gap is still open."
    )

    def get_duration_seconds(self, gap) -> float | None:
        if gap.recovered_at is None:
            return None
        return (gap.recovered_at - gap.detected_at).total_seconds()


class DayCoverageSerializer(serializers.Serializer):
    date = serializers.DateField(source="day")
    status = serializers.ChoiceField(
        choices=["complete", "degraded", "missing", "pending"],
        help_text="complete; degraded: gaps recorded; missing: no data; pending: today.",
    )
    first_event = UtcDateTimeField(allow_null=True)
    last_event = UtcDateTimeField(allow_null=True)
    deltas = serializers.IntegerField()
    trades = serializers.IntegerField()
    snapshots = serializers.IntegerField()
    lifecycle = serializers.IntegerField()
    gap_seconds = serializers.FloatField(help_text="Time of the day inside a gap.")
    gaps = CoverageGapSerializer(many=True)


class CoverageReportSerializer(serializers.Serializer):
    market_ticker = serializers.CharField()
    start_date = serializers.DateField()
    end_date = serializers.DateField()
    days = DayCoverageSerializer(many=True)


# --- Export files ---------------------------------------------------------------------


class ExportListParams(RejectEmpty, serializers.Serializer):
    type = serializers.ChoiceField(choices=TABLE_NAMES, required=False)
    # not `format`: DRF reads ?format= as the response format (URL_FORMAT_OVERRIDE)
    file_format = serializers.ChoiceField(choices=FORMATS, required=False)
    start_date = serializers.DateField(required=False, help_text="Files of this UTC day or later.")
    end_date = serializers.DateField(required=False, help_text="Files of this UTC day or earlier.")
    cursor = serializers.CharField(required=False, help_text="next_cursor of the previous page.")
    limit = serializers.IntegerField(default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT)


class ExportFileSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Relative to the dataset root, hive-style.")
    type = serializers.CharField(source="table")
    date = serializers.DateField(source="day")
    format = serializers.CharField()
    bytes = serializers.IntegerField()
    modified = UtcDateTimeField()
    url = serializers.SerializerMethodField(help_text="Where to download it.")

    def get_url(self, info) -> str:
        from rest_framework.reverse import reverse

        return reverse("export-file", kwargs={"path": info.path},
                       request=self.context.get("request"))

