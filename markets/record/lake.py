"""The Parquet lake: closed days of the record, written, verified, then kept outside PostgreSQL.

A full Kalshi day is about 191.5M deltas; PostgreSQL on one machine cannot
keep a year of them (docs/storage.md). Days older than a week move to a
hive-partitioned Parquet dataset under LAKE_URL, in the same layout and
types as `manage.py export` writes (markets/export.py), so DuckDB, Spark
(spark/lake_job.py), Trino and pandas read it as they read the day files:

    LAKE_URL/type=deltas/date=2026-11-23/part-0.parquet

The lake is a local path (tested) or an object-store URL (s3://...; through
pyarrow's file systems, markets/objectstore.py). A day moves in steps, each
recorded in `LakeDay` (markets/models/lake.py) so that a crash between them
is seen and resumed:

1. written: the file is written to a temporary folder, then put in place
   (renamed on a local lake, uploaded to an object store);
2. verified: the file, read back with DuckDB, has for every market the same
   number of rows, the same first and last instant and the same sums of every
   numeric column (and of the book levels' sizes) as the day's partition. The
   per-market numbers are kept (`LakeMarketDay`) for coverage once the day
   has left PostgreSQL.

3. dropped: the day's partition is detached and dropped, and `dropped_at`
   set, in one transaction, after checking that the partition still holds
   exactly the rows that were verified (a trade backfilled in between keeps
   the partition). From then on every read of the API takes the day from
   the lake (markets/record/reads.py); `archive --keep-partitions` stops
   before this step.

A row can still land for a dropped day (a trade backfilled late, a journal
replayed after a long outage): its writer recreates the day's partition, and
the API serves it beside the file's rows. The lake alone, as Spark or DuckDB
read it, would miss it, so the next `archive` folds the file's rows back into
the partition and archives the whole day again (`fold_late_rows`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.conf import settings
from django.db import connection, models, transaction

from ..export import _midnight, export_day
from ..models import LakeDay, LakeMarketDay
from ..objectstore import Location, location_from_url
from ..partitioning import existing_days, forget_known_partitions, partition_name
from . import compact, packs, reads
from .schema import DELTAS, SNAPSHOTS, TRADES, RecordTable

# The partitioned tables: the volume. Lifecycle and gaps stay in PostgreSQL.
ARCHIVED = (DELTAS, SNAPSHOTS, TRADES)
LEVEL_COLUMNS = ("yes_levels", "no_levels")


def lake_location() -> Location:
    return location_from_url(settings.LAKE_URL)


@dataclass
class Mismatch:
    """A market whose numbers differ between the database and the file."""

    market_ticker: str
    database: tuple | None
    lake: tuple | None


@dataclass
class ArchivedDay:
    table: str
    day: date
    rows: int
    bytes: int
    markets: int
    mismatches: list[Mismatch]

    @property
    def verified(self) -> bool:
        return not self.mismatches


# --- which days -------------------------------------------------------------------


def hot_days(table: RecordTable) -> list[date]:
    """The days that have a partition of `table` in PostgreSQL."""
    return existing_days(table.stored_model)


def days_to_archive(older_than: timedelta, *, today: date | None = None) -> list[tuple[RecordTable, date]]:
    """(table, day) of every closed day before today - older_than not yet verified in the lake."""
    today = today or datetime.now(timezone.utc).date()
    cutoff = today - older_than
    done = set(LakeDay.objects.filter(verified_at__isnull=False).values_list("table", "day"))
    return [(table, day) for table in ARCHIVED for day in hot_days(table)
            if day < cutoff and (table.name, day) not in done]


# --- the per-market numbers, from both sides ----------------------------------------


def _numeric_columns(table: RecordTable) -> list[str]:
    kinds = (models.DecimalField, models.IntegerField)  # BigIntegerField is one too
    return [c for c in table.columns
            if c != "market_ticker" and isinstance(table.model._meta.get_field(c), kinds)]


def _database_numbers(table: RecordTable, day: date) -> dict[str, tuple]:
    sums = [f"sum({c})" for c in _numeric_columns(table)]
    if table is SNAPSHOTS:
        sums += [f"sum((SELECT coalesce(sum((level->>1)::numeric), 0) "
                 f"FROM jsonb_array_elements({c}) level))" for c in LEVEL_COLUMNS]
    source = (packs.day_source("%(start)s", "%(end)s") if table is DELTAS else table.db_table)
    sql = (f"SELECT market_ticker, count(*), min({table.day_column}), max({table.day_column}), "
           f"{', '.join(sums)} FROM {source} "
           f"WHERE {table.day_column} >= %(start)s AND {table.day_column} < %(end)s "
           "GROUP BY market_ticker")
    with connection.cursor() as cursor:
        cursor.execute(sql, {"start": _midnight(day), "end": _midnight(day) + timedelta(days=1)})
        return {row[0]: _normal(row[1:]) for row in cursor.fetchall()}


def _lake_numbers(table: RecordTable, path: Path) -> dict[str, tuple]:
    sums = [f"sum({c})" for c in _numeric_columns(table)]
    if table is SNAPSHOTS:
        sums += [f"sum(coalesce(list_sum(list_transform({c}, lambda level: level.size)), 0))"
                 for c in LEVEL_COLUMNS]
    sql = (f"SELECT market_ticker, count(*), min({table.day_column}), max({table.day_column}), "
           f"{', '.join(sums)} FROM read_parquet(?) GROUP BY market_ticker")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return {row[0]: _normal(row[1:]) for row in con.execute(sql, [str(path)]).fetchall()}


def _normal(values) -> tuple:
    """Numbers compared exactly, whichever engine computed them."""
    out = []
    for value in values:
        if isinstance(value, datetime):
            value = value.astimezone(timezone.utc)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = Decimal(value)
        elif isinstance(value, Decimal):
            value = value.normalize() if value else Decimal(0)
        out.append(value)
    return tuple(out)


def verify_file(table: RecordTable, day: date, path: Path) -> tuple[dict[str, tuple], list[Mismatch]]:
    """Compare the file with the day's partition, market by market."""
    database = _database_numbers(table, day)
    lake = _lake_numbers(table, path)
    mismatches = [Mismatch(m, database.get(m), lake.get(m))
                  for m in sorted(set(database) | set(lake)) if database.get(m) != lake.get(m)]
    return database, mismatches


# --- archiving ----------------------------------------------------------------------


def archive_day(table: RecordTable, day: date, location: Location | None = None) -> ArchivedDay:
    """Write one day of `table` to the lake and verify it (see the module docstring)."""
    location = location or lake_location()
    with tempfile.TemporaryDirectory(prefix="lake-") as tmp:
        exported = export_day(table=table.name, day=day, out_dir=Path(tmp))
        relative = exported.path.relative_to(tmp).as_posix()
        numbers, mismatches = verify_file(table, day, exported.path)
        if not mismatches:
            _put(location, exported.path, relative)
    now = datetime.now(timezone.utc)
    with transaction.atomic():
        LakeDay.objects.update_or_create(
            table=table.name, day=day,
            defaults={"path": relative, "rows": exported.rows, "bytes": exported.bytes,
                      "written_at": now, "verified_at": None if mismatches else now,
                      "dropped_at": None})
        if not mismatches:
            LakeMarketDay.objects.filter(table=table.name, day=day).delete()
            LakeMarketDay.objects.bulk_create(
                [LakeMarketDay(table=table.name, day=day, market_ticker=market, rows=n[0],
                               first_at=n[1], last_at=n[2]) for market, n in numbers.items()],
                batch_size=5000)
    return ArchivedDay(table.name, day, exported.rows, exported.bytes, len(numbers), mismatches)


def _put(location: Location, local_file: Path, relative: str) -> None:
    """The verified file into the lake: renamed in place locally, uploaded otherwise."""
    target_dir = location.local_path
    if target_dir is None:
        location.upload(local_file, relative)
        return
    target = target_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(local_file, partial)
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, target)


def drop_day(table: RecordTable, day: date) -> bool:
    """Detach and drop the verified day's partition; False if it changed since verification."""
    lake_day = LakeDay.objects.get(table=table.name, day=day, verified_at__isnull=False)
    with transaction.atomic():
        if not _drop_partition(table, day, lake_day.rows):
            transaction.set_rollback(True)
            return False
        LakeDay.objects.filter(pk=lake_day.pk).update(dropped_at=datetime.now(timezone.utc))
    forget_known_partitions()
    return True


def _drop_partition(table: RecordTable, day: date, rows: int) -> bool:
    """In the caller's transaction, detach and drop the day's partition if it
    holds exactly `rows` rows (True; also when there is none); False otherwise,
    and the caller rolls back."""
    name = partition_name(table.stored_model, day)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)",
                       [settings.PARTITION_LOCK_TIMEOUT])
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is None:
            return True
        # DETACH locks the partition: no row can land between the count and the drop.
        cursor.execute(f"ALTER TABLE {table.stored_table} DETACH PARTITION {name}")
        cursor.execute(f"SELECT count(*) FROM {name}")
        stored = cursor.fetchone()[0]
        if table is DELTAS:
            # A packed day's deltas are in its chunks (markets/record/packs.py).
            cursor.execute(f"LOCK TABLE {packs.TABLE} IN SHARE ROW EXCLUSIVE MODE")
            stored += packs.day_count(cursor, day)
        if stored != rows:
            return False
        cursor.execute(f"DROP TABLE {name}")
        if table is DELTAS:
            packs.drop_day(cursor, day)
    return True


def days_to_drop(older_than: timedelta, *, today: date | None = None) -> list[tuple[RecordTable, date]]:
    """(table, day) of every verified day before today - older_than whose partition is kept."""
    today = today or datetime.now(timezone.utc).date()
    tables = {t.name: t for t in ARCHIVED}
    return [(tables[d.table], d.day) for d in LakeDay.objects.filter(
        verified_at__isnull=False, dropped_at__isnull=True, day__lt=today - older_than,
        table__in=list(tables)).order_by("day", "table")]


# --- late rows: a dropped day whose partition came back ---------------------------


def days_with_late_rows(older_than: timedelta | None = None, *,
                        today: date | None = None) -> list[tuple[RecordTable, date]]:
    """(table, day) of every dropped day whose partition a late write recreated.

    With `older_than`, only days before today - older_than (those `archive`
    with that age archives again).
    """
    today = today or datetime.now(timezone.utc).date()
    cutoff = today - older_than if older_than is not None else date.max
    dropped = set(LakeDay.objects.filter(dropped_at__isnull=False).values_list("table", "day"))
    return [(table, day) for table in ARCHIVED for day in hot_days(table)
            if day < cutoff and (table.name, day) in dropped]


class FoldError(RuntimeError):
    """The day's file could not be read back whole: nothing was changed."""


def fold_late_rows(table: RecordTable, day: date) -> int:
    """Put a dropped day's file back into its recreated partition; the rows moved.

    In one transaction: the file's rows go into the partition beside the
    late ones (a row already there is kept once), and the day is marked
    neither verified nor dropped, so reads move from file plus partition to
    the partition alone at the commit, and `archive` writes, verifies and
    drops the whole day again. A partition that came back empty is only
    dropped again (0).
    """
    lake_day = LakeDay.objects.get(table=table.name, day=day, dropped_at__isnull=False)
    with transaction.atomic():
        if _drop_partition(table, day, 0):
            forget_known_partitions()
            return 0
        transaction.set_rollback(True)
    staging = f"_fold_{table.db_table}"
    columns = ", ".join(table.columns)
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(f"CREATE TEMP TABLE {staging} (LIKE {table.db_table} INCLUDING DEFAULTS) "
                    "ON COMMIT DROP")
        with raw.copy(f"COPY {staging} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            for chunk in _file_as_csv(table, lake_day):
                copy.write(chunk)
        raw.execute(f"SELECT count(*) FROM {staging}")
        staged = raw.fetchone()[0]
        if staged != lake_day.rows:
            raise FoldError(f"{table.name} {day}: the file gave {staged} rows, "
                            f"{lake_day.rows} were archived")
        for statement in compact.insert_sql(table, staging):
            raw.execute(statement)
        LakeDay.objects.filter(pk=lake_day.pk).update(verified_at=None, dropped_at=None)
    return staged


def _file_as_csv(table: RecordTable, lake_day: LakeDay):
    """The day file's rows as CSV that PostgreSQL's COPY reads, in chunks.

    DuckDB reads the file (from a local lake or an object store, as reads
    do) and Arrow writes the CSV: no Python object per row. Book levels go
    back to the JSON text they were stored as, prices and sizes printed at
    their scale.
    """
    select = ", ".join(
        f"to_json(list_transform({c}, lambda l: [l.price::VARCHAR, l.size::VARCHAR]))::VARCHAR"
        if c in LEVEL_COLUMNS else c for c in table.columns)
    options = pa_csv.WriteOptions(include_header=False)
    with reads._day_files(table, [reads.ArchivedDay(lake_day.day, lake_day.path)]) as (
            source, params):
        con = reads._duckdb()
        batches = con.sql(f"SELECT {select} FROM {source}", params=params).to_arrow_reader(65_536)
        for batch in batches:
            sink = pa.BufferOutputStream()
            pa_csv.write_csv(batch, sink, options)
            yield sink.getvalue().to_pybytes()


# --- health -------------------------------------------------------------------------


@dataclass
class LakeReport:
    url: str
    verified: list[LakeDay]
    unverified: list[LakeDay]  # written but not verified: a crash, or a mismatch
    late: list[tuple[str, date]]  # dropped, then rows landed: not in the file yet

    @property
    def healthy(self) -> bool:
        return not self.unverified and not self.late


def lake_report() -> LakeReport:
    days = list(LakeDay.objects.all())
    return LakeReport(settings.LAKE_URL, [d for d in days if d.verified_at],
                      [d for d in days if not d.verified_at],
                      [(table.name, day) for table, day in days_with_late_rows()])
