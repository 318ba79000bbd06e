"""What the partitioned storage looks like: for `check_storage` and monitoring."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from django.db import connection

from .models import StoredDelta
from .partitioning import NAME_FORMAT, PARTITIONED_MODELS, existing_days
from .record import packs


@dataclass
class TableReport:
    table: str
    is_partitioned: bool
    partitions: list[str]
    first_day: date | None
    last_day: date | None
    days_ahead: int  # whole days after today that have a partition, contiguously
    # Holes between first_day and last_day: normal after a backfill far in
    # the past (writers create the days they need), so informational only.
    missing_days: list[date]
    default_partition: str | None
    rows_in_default: int

    @property
    def healthy(self) -> bool:
        return (
            self.is_partitioned
            and self.days_ahead >= 1
            and self.rows_in_default == 0
        )


def storage_report(*, today: date | None = None) -> list[TableReport]:
    """Partitions present per partitioned table, days covered ahead, and default rows."""
    today = today or datetime.now(timezone.utc).date()
    return [_table_report(model._meta.db_table, today) for model in PARTITIONED_MODELS]


def _table_report(table: str, today: date) -> TableReport:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid "
            "WHERE c.relname = %s",
            [table],
        )
        is_partitioned = cursor.fetchone() is not None
        cursor.execute(
            """
            SELECT child.relname, pg_get_expr(child.relpartbound, child.oid)
            FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname = %s
            ORDER BY child.relname
            """,
            [table],
        )
        children = cursor.fetchall()
        default = next((name for name, bound in children if bound == "DEFAULT"), None)
        rows_in_default = 0
        if default:
            cursor.execute(f'SELECT count(*) FROM "{default}"')
            rows_in_default = cursor.fetchone()[0]

    names = [name for name, bound in children if bound != "DEFAULT"]
    days = sorted(d for d in (_day_of(table, n) for n in names) if d)
    present = set(days)
    missing = []
    if days:
        day = days[0]
        while day < days[-1]:
            if day not in present:
                missing.append(day)
            day += timedelta(days=1)
    ahead = 0
    while today + timedelta(days=ahead + 1) in present:
        ahead += 1
    return TableReport(
        table=table,
        is_partitioned=is_partitioned,
        partitions=names,
        first_day=days[0] if days else None,
        last_day=days[-1] if days else None,
        days_ahead=ahead,
        missing_days=missing,
        default_partition=default,
        rows_in_default=rows_in_default,
    )


def _day_of(table: str, partition: str) -> date | None:
    suffix = partition[len(table) + 1 :]
    try:
        return datetime.strptime(suffix, NAME_FORMAT).date()
    except ValueError:
        return None


# --- closed days' deltas in chunks (markets/record/packs.py) ----------------------

# Yesterday's deltas may wait for tonight's `archive`; older loose ones mean it is not running.
PACK_GRACE_DAYS = 1


@dataclass
class PacksReport:
    today: date
    packed_days: list[date]  # days with a partition of chunks
    # Closed days whose partition of deltas holds loose rows: not packed yet,
    # or given a late delta since (the next `archive` packs them).
    loose_days: list[date]

    @property
    def overdue(self) -> list[date]:
        """Loose days older than the grace: `archive` (daily) is not packing them."""
        return [d for d in self.loose_days if d < self.today - timedelta(days=PACK_GRACE_DAYS)]

    @property
    def healthy(self) -> bool:
        return not self.overdue


def packs_report(*, today: date | None = None) -> PacksReport:
    """Which closed days are packed, and which still hold loose deltas."""
    today = today or datetime.now(timezone.utc).date()
    loose = [day for day in existing_days(StoredDelta)
             if day < today and packs.has_loose_deltas(day)]
    return PacksReport(today=today, packed_days=existing_days(packs.TABLE), loose_days=loose)


# --- the raw archive (collector/raw_archive.py) --------------------------------

# An hour counts as one the collector ran in when a run overlapped it this long.
RAW_HOUR_MIN_OVERLAP = timedelta(minutes=1)
RAW_CHECK_DAYS = 7  # runs started this recently are checked for missing hours


@dataclass
class RawArchiveReport:
    url: str
    bytes_by_day: dict[date, int]
    files: int
    # Hours a collector run overlapped (collector_runs) with no archive file.
    missing_hours: list[datetime]

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_day.values())

    @property
    def healthy(self) -> bool:
        return not self.missing_hours


def raw_archive_report(location, *, now: datetime | None = None,
                       check_days: int = RAW_CHECK_DAYS) -> RawArchiveReport:
    """Size of the raw archive per day, and the hours a collector ran with no file.

    An hour is expected when a run of the last `check_days` days (from
    collector_runs: start to stop, or to its durable watermark after a
    crash) overlapped it by RAW_HOUR_MIN_OVERLAP. Any collector's file counts.
    """
    from .models import CollectorRun

    now = now or datetime.now(timezone.utc)
    by_day: dict[date, int] = {}
    hours_present: set[datetime] = set()
    files = 0
    for relative, size in location.files():
        parts = relative.split("/")
        if len(parts) < 3 or not parts[0].startswith("date=") or not parts[1].startswith("hour="):
            continue
        try:
            day = datetime.strptime(parts[0][5:], "%Y-%m-%d").date()
            hour = datetime(day.year, day.month, day.day, int(parts[1][5:]), tzinfo=timezone.utc)
        except ValueError:
            continue
        files += 1
        by_day[day] = by_day.get(day, 0) + size
        hours_present.add(hour)
    missing: set[datetime] = set()
    runs = CollectorRun.objects.filter(started_at__gte=now - timedelta(days=check_days))
    for run in runs.only("started_at", "stopped_at", "durable_at"):
        end = run.stopped_at or run.durable_at or run.started_at
        hour = run.started_at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
        while hour < end:
            overlap = min(end, hour + timedelta(hours=1)) - max(run.started_at, hour)
            if overlap >= RAW_HOUR_MIN_OVERLAP and hour not in hours_present:
                missing.add(hour)
            hour += timedelta(hours=1)
    return RawArchiveReport(location.url, dict(sorted(by_day.items())), files, sorted(missing))
