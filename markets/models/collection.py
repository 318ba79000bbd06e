"""How the recording itself went: collector runs and the trade holes still owed.

A `CollectorRun` is one start of `manage.py collect`: which flags it
subscribed with (Kalshi will flip `use_yes_price`'s default and then drop
the flag, so history must say which convention each session used), which
markets it was recording, how far its rows were durable, and whether it
stopped cleanly. A start after an unclean stop reads these facts (from the
journal directory's state file, which needs no database) and records the
crash as a hole.

A `TradeBackfill` is a trade hole waiting for its REST backfill: the
persistent retry queue. A trade hole (a channel-wide `SequenceGap` on
`trade`) closes only when its backfill succeeded; until then the row stays
`pending` and is retried with capped backoff, across restarts and outages.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models


class CollectorRun(models.Model):
    id = models.BigIntegerField(primary_key=True, help_text="Start time in microseconds since the epoch.")
    instance = models.TextField(help_text="Which collector: the absolute path of its journal directory.")
    started_at = models.DateTimeField()
    durable_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Every row received before this instant is in PostgreSQL (durable watermark).",
    )
    stopped_at = models.DateTimeField(null=True, blank=True)
    clean = models.BooleanField(default=False, help_text="The clean-shutdown marker.")
    stop_reason = models.TextField(blank=True, default="")
    flags = models.JSONField(default=dict, help_text="Subscription flags this run sent (use_yes_price, ...).")
    markets = ArrayField(models.TextField(), blank=True, default=list)
    recovered_from = models.BigIntegerField(
        null=True, blank=True, help_text="The run whose unclean stop this run recorded as a crash hole."
    )

    class Meta:
        db_table = "collector_runs"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"run {self.id} ({'clean' if self.clean else 'open or unclean'})"


class BackfillStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"


class TradeBackfill(models.Model):
    id = models.BigAutoField(primary_key=True)
    since = models.DateTimeField()
    until = models.DateTimeField()
    market_tickers = ArrayField(
        models.TextField(), blank=True, default=list, help_text="Empty: every market."
    )
    gaps = models.JSONField(
        default=list,
        help_text="The trade holes it closes: [market_ticker, channel, session_id, detected_at].",
    )
    status = models.TextField(choices=BackfillStatus.choices, default=BackfillStatus.PENDING)
    attempts = models.IntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True, default="")
    stored = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "trade_backfills"
        ordering = ["since", "id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="trade_backfills_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"trade backfill {self.since:%Y-%m-%d %H:%M:%S}..{self.until:%H:%M:%S} ({self.status})"
