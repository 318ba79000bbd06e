"""Wire values to Python values, and Python parameters to wire values.

The API writes prices as dollar strings with 4 decimals, counts as strings
with 2 and times as ISO 8601 UTC with a Z. Fields are recognised by name
(the API uses each name for one kind of value), so nested objects (levels,
best prices, coverage, gaps) convert the same way as top-level ones.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Sequence

# Prices: DECIMAL(10,4) on the server.
PRICE_FIELDS = frozenset({
    "price", "yes_price", "no_price", "open", "high", "low", "close", "vwap",
    "settlement_value", "floor_strike", "cap_strike", "fee_multiplier",
})
# Counts: DECIMAL(18,2) on the server.
COUNT_FIELDS = frozenset({
    "count", "delta", "quantity", "size", "volume", "yes_taker_volume", "no_taker_volume",
})
TIME_FIELDS = frozenset({
    "ts", "timestamp", "received_at", "start", "end", "start_time", "end_time", "modified",
    "first_event", "last_event", "detected_at", "recovered_at", "updated_at", "open_time",
    "close_time", "expected_expiration_time", "expiration_time", "strike_date",
    "determined_at", "settled_at", "data_starts_at", "last_update", "snapshot_received_at",
    "first_delta_at", "last_delta_at", "first_trade_at", "last_trade_at",
})
DATE_FIELDS = frozenset({"date", "start_date", "end_date"})
# Book sides in the replay stream: lists of [price, size] strings.
LEVEL_LIST_FIELDS = frozenset({"yes", "no"})

PRICE_PRECISION, PRICE_SCALE = 10, 4
COUNT_PRECISION, COUNT_SCALE = 18, 2


def parse_time(value: str) -> datetime:
    """An ISO 8601 time from the API as an aware UTC datetime."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def convert(key: str, value: Any) -> Any:
    """One field's wire value as its Python value (recursively for objects and lists)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return convert_record(value)
    if isinstance(value, str):
        if key in PRICE_FIELDS or key in COUNT_FIELDS:
            return Decimal(value)
        if key in TIME_FIELDS:
            return parse_time(value)
        if key in DATE_FIELDS:
            return date.fromisoformat(value)
        return value
    if isinstance(value, list):
        if key in LEVEL_LIST_FIELDS and value and isinstance(value[0], list):
            return [(Decimal(p), Decimal(s)) for p, s in value]
        return [convert(key, item) for item in value]
    return value


def convert_record(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON object from the API with Decimal prices and sizes, UTC datetimes."""
    return {key: convert(key, value) for key, value in record.items()}


def wire_time(value: datetime | date | str | None) -> str | None:
    """A time parameter as the API reads it: datetimes (naive = UTC) and dates (midnight UTC)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).isoformat().replace(
        "+00:00", "Z")


def wire_date(value: datetime | date | str | None) -> str | None:
    """A day parameter (YYYY-MM-DD); a datetime gives its UTC day."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.date().isoformat()
    return value.isoformat()


def wire_list(value: "str | Sequence[str] | None") -> str | None:
    """A comma-separated parameter from a list (or a string already joined)."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


def query(**params: Any) -> dict[str, Any]:
    """Query parameters without the ones left out (None); booleans as the API spells them."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out
