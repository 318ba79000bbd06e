"""What of the record has been written to the Parquet lake (markets/record/lake.py).

A day of a partitioned table moves to the lake in steps, each recorded here so
that a crash between them is seen and resumed: written (the Parquet file
exists), verified (its rows, per market, equal the database's), dropped (the
day's partition was detached and dropped). `check_storage` reports any day
that is written but not verified.
"""

from django.db import models


class LakeDay(models.Model):
    """One UTC day of one record table in the lake."""

    id = models.BigAutoField(primary_key=True)
    table = models.TextField(help_text="deltas, snapshots or trades (markets/record/schema.py).")
    day = models.DateField()
    path = models.TextField(help_text="The file, relative to LAKE_URL.")
    rows = models.BigIntegerField()
    bytes = models.BigIntegerField()
    written_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    dropped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "lake_days"
        ordering = ["day", "table"]
        constraints = [models.UniqueConstraint(fields=["table", "day"], name="lake_days_uniq")]


class LakeMarketDay(models.Model):
    """One market's rows in one LakeDay: what verification compared, kept for coverage.

    Once a day's partition is dropped, how many rows a market had that day
    and when its first and last were, are answered from here without
    opening the lake.
    """

    id = models.BigAutoField(primary_key=True)
    table = models.TextField()
    day = models.DateField()
    market_ticker = models.TextField()
    rows = models.BigIntegerField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        db_table = "lake_market_days"
        constraints = [
            models.UniqueConstraint(fields=["table", "day", "market_ticker"],
                                    name="lake_market_days_uniq")
        ]
        indexes = [models.Index(fields=["market_ticker", "day"], name="lake_market_days_idx")]
