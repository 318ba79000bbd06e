"""Daily partitions for the time-series tables, run by `manage.py pgpartition`.

Policy (see docs/storage.md):

* Daily RANGE partitions in UTC, named `<table>_YYYY_MM_DD`
  (e.g. `trades_2026_11_24`), from PARTITION_DAYS_BEHIND days ago to
  PARTITION_DAYS_AHEAD days ahead. Re-running creates only what is missing.
* No DEFAULT partition. A row for a day that has no partition yet is not
  parked somewhere it would later block partition creation: the writers call
  `ensure_partitions()` for the days of each batch before loading it, so a
  backfill into last year creates last year's partitions.
* No retention: nothing is ever dropped automatically, because an order book
  that was not recorded can never be fetched again.
* Partition DDL runs with a lock_timeout, so that the cron job fails fast (and
  runs again next time) instead of queueing every reader behind its lock.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Iterable

from django.conf import settings
from django.db import connection, transaction
from psqlextra.partitioning import (
    PostgresCurrentTimePartitioningStrategy,
    PostgresPartitioningConfig,
    PostgresPartitioningManager,
    PostgresTimePartitionSize,
)
from psqlextra.partitioning.constants import AUTO_PARTITIONED_COMMENT
from psqlextra.partitioning.time_partition import PostgresTimePartition

from .models import OrderbookSnapshot, StoredDelta, Trade

NAME_FORMAT = "%Y_%m_%d"
DAY = PostgresTimePartitionSize(days=1)
PARTITIONED_MODELS = (Trade, StoredDelta, OrderbookSnapshot)


def _set_lock_timeout(schema_editor) -> None:
    # SET LOCAL lasts until the end of the transaction the DDL runs in.
    schema_editor.execute(
        "SELECT set_config('lock_timeout', %s, true)",
        (settings.PARTITION_LOCK_TIMEOUT,),
    )


class DailyPartition(PostgresTimePartition):
    """One UTC day; created under a lock timeout."""

    def __init__(self, day: date) -> None:
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        super().__init__(size=DAY, start_datetime=start, name_format=NAME_FORMAT)

    def create(self, model, schema_editor, comment=None) -> None:
        _set_lock_timeout(schema_editor)
        super().create(model, schema_editor, comment=comment)


class DailyWindowStrategy(PostgresCurrentTimePartitioningStrategy):
    """Daily partitions from N days behind today to M days ahead, never deleted.

    The window is read from settings when the plan is made, not at import.
    A day whose partition `archive` dropped after moving it to the lake
    (markets/record/lake.py) is not created again: its rows are read from
    the lake.
    """

    def __init__(self, model=None) -> None:
        super().__init__(size=DAY, count=0, max_age=None, name_format=NAME_FORMAT)
        self.model = model

    def _dropped(self) -> set[date]:
        if self.model is None:
            return set()
        from .models import LakeDay
        from .record.schema import TABLES

        names = [t.name for t in TABLES.values() if t.stored_model is self.model]
        return set(LakeDay.objects.filter(table__in=names, dropped_at__isnull=False)
                   .values_list("day", flat=True))

    def to_create(self):
        today = datetime.now(timezone.utc).date()
        first = today - timedelta(days=settings.PARTITION_DAYS_BEHIND)
        last = today + timedelta(days=settings.PARTITION_DAYS_AHEAD)
        dropped = self._dropped()
        day = first
        while day <= last:
            if day not in dropped:
                yield DailyPartition(day)
            day += timedelta(days=1)

    def to_delete(self):
        return iter(())


manager = PostgresPartitioningManager(
    [
        PostgresPartitioningConfig(model=model, strategy=DailyWindowStrategy(model))
        for model in PARTITIONED_MODELS
    ]
)


def _db_table(model) -> str:
    """A model's table, or the table named (a table without a model: markets/record/packs.py)."""
    return model if isinstance(model, str) else model._meta.db_table


def partition_name(model, day: date) -> str:
    """The table name of `model`'s partition for `day`, e.g. trades_2026_11_24."""
    return f"{_db_table(model)}_{day.strftime(NAME_FORMAT)}"


def existing_partitions(model) -> list[str]:
    """Names of `model`'s (or a table's) partitions, sorted."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname
            FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname = %s
            ORDER BY child.relname
            """,
            [_db_table(model)],
        )
        return [row[0] for row in cursor.fetchall()]


def existing_days(model) -> list[date]:
    """The UTC days that have a partition of `model` (or a table), sorted (not a DEFAULT one)."""
    prefix = len(_db_table(model)) + 1
    days = []
    for name in existing_partitions(model):
        try:
            days.append(datetime.strptime(name[prefix:], NAME_FORMAT).date())
        except ValueError:
            continue  # a DEFAULT partition, or one named by hand
    return days


PACKED_COMMENT = "kalshi_data: packed once its day closed"


def pack_closed_days(*, today: date | None = None) -> list[str]:
    """Pack the deltas, and rebuild, once, the indexes of every partition whose UTC day has ended.

    Rows arrive in time order but every key leads with the market, so each
    insert lands in the middle of a B-tree, and its pages split half full:
    while a day is written its indexes are nearly half empty space
    (docs/storage.md, bench/storage_bench.py). Once the day has ended,
    REINDEX ... CONCURRENTLY packs them (readers and late writers go on).
    CONCURRENTLY cannot run inside a transaction: called in one (a test, a
    caller's atomic block), a plain REINDEX locks each partition while it
    runs. A comment on the partition's primary key index marks it done; a
    late row after that only costs a little space. Returns the partitions
    packed.
    """
    from .record import packs  # the record builds on partitions

    today = today or datetime.now(timezone.utc).date()
    reindex = "REINDEX TABLE" if connection.in_atomic_block else "REINDEX TABLE CONCURRENTLY"
    packed = []
    for model in PARTITIONED_MODELS:
        for day in existing_days(model):
            if day >= today:
                continue
            name = partition_name(model, day)
            if model is StoredDelta:
                # Its deltas go into chunks, several to a row: loose rows left
                # by a late write too (markets/record/packs.py).
                with transaction.atomic():
                    loose = packs.has_loose_deltas(day)
                if loose:
                    packs.pack_day(day)
                    if not connection.in_atomic_block:
                        # The emptied heap goes back to the system now, not at
                        # autovacuum's next visit.
                        with connection.cursor() as cursor:
                            cursor.execute(f"VACUUM {name}")
            with connection.cursor() as cursor:
                cursor.execute("SELECT indexrelid::regclass::text, obj_description(indexrelid, "
                               "'pg_class') FROM pg_index WHERE indrelid = %s::regclass "
                               "AND indisprimary", [name])
                key, comment = cursor.fetchone()
                if comment == PACKED_COMMENT:
                    continue
                cursor.execute(f"{reindex} {name}")
                cursor.execute(f"COMMENT ON INDEX {key} IS %s", [PACKED_COMMENT])
            packed.append(name)
    return packed


# Days known to have a partition, per table, so a writer asks the catalogue
# only when a batch reaches a day it has not seen. Partitions are never
# dropped automatically, so the cache cannot go stale by our own doing.
_known_days: dict[str, set[date]] = {}


def ensure_partitions(model, days: Iterable[date]) -> list[str]:
    """Create the partitions of `model` for `days` that do not exist yet.

    Called by the writers before they load a batch, so no row is ever refused
    for lack of a partition. Returns the names of the partitions created.
    """
    table = model._meta.db_table
    known = _known_days.setdefault(table, set())
    wanted = set(days) - known
    if not wanted:
        return []
    present = set(existing_partitions(model))
    created = []
    for day in sorted(wanted):
        name = partition_name(model, day)
        if name in present:
            continue
        with transaction.atomic(), connection.schema_editor() as editor:
            with connection.cursor() as cursor:
                # Another writer may have created it in the meantime.
                cursor.execute("SELECT to_regclass(%s)", [name])
                if cursor.fetchone()[0] is None:
                    DailyPartition(day).create(
                        model, editor, comment=AUTO_PARTITIONED_COMMENT
                    )
                    created.append(name)
    # Remember the days only once they are committed: a partition created in
    # a transaction that rolls back is gone again.
    transaction.on_commit(lambda: known.update(wanted))
    return created


def forget_known_partitions() -> None:
    """Drop the cache of known partitions (tests that recreate tables)."""
    _known_days.clear()
