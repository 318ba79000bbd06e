"""What the partitioned storage looks like: for `check_storage` and monitoring."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from django.db import connection

from .partitioning import NAME_FORMAT, PARTITIONED_MODELS


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
