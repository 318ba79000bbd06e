"""Series -> event -> market, and how each market settled.

These tables are small and keyed by Kalshi's own tickers. They hold no
foreign keys to each other: the collector may learn of a market before its
event (or a settlement before the market), and a recorder must never drop a
row because its parent has not arrived yet. The tickers still join.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models

from .fields import PriceField


class Series(models.Model):
    """A Kalshi series, e.g. KXHIGHNY: the template its events repeat."""

    ticker = models.TextField(primary_key=True)
    title = models.TextField(blank=True, default="")
    frequency = models.TextField(blank=True, default="")
    category = models.TextField(blank=True, default="")
    tags = ArrayField(models.TextField(), blank=True, default=list)
    settlement_sources = models.JSONField(blank=True, default=list)
    contract_url = models.TextField(blank=True, default="")
    fee_type = models.TextField(blank=True, default="")
    fee_multiplier = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    metadata = models.JSONField(
        blank=True, default=dict, help_text="The raw series object as last received."
    )
    discovered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "series"
        ordering = ["ticker"]
        verbose_name_plural = "series"
        indexes = [models.Index(fields=["category"], name="series_category_idx")]

    def __str__(self):
        return self.ticker


class Event(models.Model):
    """A Kalshi event, e.g. KXHIGHNY-26NOV24: a question with one or more markets."""

    event_ticker = models.TextField(primary_key=True)
    series_ticker = models.TextField(blank=True, default="")
    title = models.TextField(blank=True, default="")
    sub_title = models.TextField(blank=True, default="")
    category = models.TextField(blank=True, default="")
    mutually_exclusive = models.BooleanField(null=True, blank=True)
    collateral_return_type = models.TextField(blank=True, default="")
    status = models.TextField(
        blank=True,
        default="",
        help_text="Derived from the event's markets: unopened, open, closed or settled.",
    )
    strike_date = models.DateTimeField(null=True, blank=True)
    strike_period = models.TextField(blank=True, default="")
    metadata = models.JSONField(
        blank=True, default=dict, help_text="The raw event object as last received."
    )
    discovered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "events"
        ordering = ["event_ticker"]
        indexes = [
            models.Index(fields=["series_ticker"], name="events_series_idx"),
            models.Index(fields=["status"], name="events_status_idx"),
            models.Index(fields=["category"], name="events_category_idx"),
        ]

    def __str__(self):
        return self.event_ticker


class Market(models.Model):
    """A Kalshi market (one binary contract), e.g. KXHIGHNY-26NOV24-T60."""

    ticker = models.TextField(primary_key=True)
    event_ticker = models.TextField(blank=True, default="")
    series_ticker = models.TextField(blank=True, default="")
    market_type = models.TextField(blank=True, default="binary")
    title = models.TextField(blank=True, default="")
    yes_sub_title = models.TextField(blank=True, default="")
    no_sub_title = models.TextField(blank=True, default="")
    status = models.TextField(
        blank=True,
        default="",
        help_text="Kalshi's status: initialized, inactive, active, closed, "
        "determined, disputed, amended or finalized.",
    )
    open_time = models.DateTimeField(null=True, blank=True)
    close_time = models.DateTimeField(null=True, blank=True)
    expected_expiration_time = models.DateTimeField(null=True, blank=True)
    expiration_time = models.DateTimeField(
        null=True, blank=True, help_text="Kalshi's latest_expiration_time."
    )
    price_level_structure = models.TextField(blank=True, default="")
    price_ranges = models.JSONField(
        blank=True, default=list, help_text='[{"start", "end", "step"}] in dollars.'
    )
    strike_type = models.TextField(blank=True, default="")
    floor_strike = models.DecimalField(
        max_digits=24, decimal_places=8, null=True, blank=True
    )
    cap_strike = models.DecimalField(
        max_digits=24, decimal_places=8, null=True, blank=True
    )
    custom_strike = models.JSONField(null=True, blank=True)
    can_close_early = models.BooleanField(null=True, blank=True)
    rules_primary = models.TextField(blank=True, default="")
    rules_secondary = models.TextField(blank=True, default="")
    result = models.TextField(blank=True, default="")
    settlement_value = PriceField(null=True, blank=True)
    metadata = models.JSONField(
        blank=True, default=dict, help_text="The raw market object as last received."
    )
    discovered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "markets"
        ordering = ["ticker"]
        indexes = [
            models.Index(fields=["status"], name="markets_status_idx"),
            models.Index(fields=["event_ticker"], name="markets_event_idx"),
            models.Index(fields=["series_ticker"], name="markets_series_idx"),
        ]

    def __str__(self):
        return self.ticker


class SettlementResult(models.TextChoices):
    YES = "yes"
    NO = "no"
    ALL_NO = "all_no"
    ALL_YES = "all_yes"
    VOID = "void"
    SCALAR = "scalar"


class Settlement(models.Model):
    """How a market settled: its result, value and when it was determined and paid."""

    market_ticker = models.TextField(primary_key=True)
    event_ticker = models.TextField(blank=True, default="")
    result = models.TextField(choices=SettlementResult.choices)
    settlement_value = PriceField(
        null=True, blank=True, help_text="Dollars paid per YES contract."
    )
    determined_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    source = models.TextField(
        default="lifecycle",
        help_text="Where the row came from: lifecycle (WebSocket, confirmed by "
        "REST when possible), rest, or historical.",
    )
    metadata = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "settlements"
        ordering = ["-settled_at", "market_ticker"]
        indexes = [
            models.Index(fields=["event_ticker"], name="settlements_event_idx"),
            models.Index(fields=["result"], name="settlements_result_idx"),
            models.Index(fields=["settled_at"], name="settlements_settled_idx"),
        ]

    def __str__(self):
        return f"{self.market_ticker}: {self.result}"
