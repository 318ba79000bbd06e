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


class UtcDateTimeField(serializers.DateTimeField):
    """ISO 8601 in UTC with a Z, e.g. 2026-11-24T13:05:00.123456Z.

    On input a time without a zone is read as UTC (documented), so that
    `2026-11-24T13:05:00` means the same thing on every client.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("default_timezone", timezone.utc)
        super().__init__(**kwargs)

    def to_representation(self, value):
        if value is None:
            return None
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


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
