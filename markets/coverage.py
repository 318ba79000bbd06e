"""What the record holds for a market, UTC day by UTC day, and how good it is.

A backtest should know before it starts which days it can trust. For each
day the report gives a status:

* ``pending``: the day is today (or later): still being recorded;
* ``missing``: nothing was recorded that day (no delta, trade or snapshot);
* ``degraded``: data exists, but a recorded gap overlaps the day;
* ``complete``: data exists and no gap overlaps the day;

with the first and last event, the counts per table, and every gap that
overlaps the day. Counts read each table over a half-open range of its
partition column (deltas and snapshots: receive time; trades: exchange
time), so only that day's partitions are scanned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from django.db import connection
from django.db.models import TextChoices

from .models import SequenceGap
from .record import compact, packs, reads
from .record.gaps import market_gaps, overlapping
from .record.schema import DELTAS, LIFECYCLE, SNAPSHOTS, TRADES

ONE_DAY = timedelta(days=1)


class DayStatus(TextChoices):
    COMPLETE = "complete", "data and no recorded gap"
    DEGRADED = "degraded", "data, but a recorded gap overlaps the day"
    MISSING = "missing", "nothing recorded"
    PENDING = "pending", "today or later: still being recorded"


@dataclass
class DayCoverage:
    market_ticker: str
    day: date
    status: str = DayStatus.MISSING
    first_event: datetime | None = None
    last_event: datetime | None = None
    deltas: int = 0
    trades: int = 0
    snapshots: int = 0
    lifecycle: int = 0
    gaps: list[SequenceGap] = field(default_factory=list)
    gap_seconds: float = 0.0  # the part of the day inside a gap (overlaps counted once)


# (table, partition column, count attribute)
_TABLES = (
    (DELTAS, "received_at", "deltas"),
    (SNAPSHOTS, "received_at", "snapshots"),
    (TRADES, "ts", "trades"),
    (LIFECYCLE, "received_at", "lifecycle"),
)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def coverage(
    *, market_ticker: str, start_date: date, end_date: date, now: datetime | None = None
) -> list[DayCoverage]:
    """One DayCoverage per UTC day from start_date to end_date, both included."""
    now = now or datetime.now(timezone.utc)
    today = now.astimezone(timezone.utc).date()
    days = {}
    day = start_date
    while day <= end_date:
        days[day] = DayCoverage(market_ticker, day)
        day += ONE_DAY
    start, end = _midnight(start_date), _midnight(end_date) + ONE_DAY

    with connection.cursor() as cursor:
        for table, column, attribute in _TABLES:
            market, key = compact.market_column(table, market_ticker)
            # Deltas: only the chunks of the days asked are unpacked (markets/record/packs.py).
            source = (packs.day_source("%(start)s", "%(end)s") if table is DELTAS
                      else table.db_table)
            cursor.execute(
                f"SELECT ({column} AT TIME ZONE 'UTC')::date, count(*), min({column}),"
                f" max({column}) FROM {source} WHERE {market} = %(key)s"
                f" AND {column} >= %(start)s AND {column} < %(end)s GROUP BY 1",
                {"key": key, "start": start, "end": end},
            )
            for day, count, first, last in cursor.fetchall():
                report = days[day]
                setattr(report, attribute, count)
                report.first_event = min(filter(None, (report.first_event, first)))
                report.last_event = max(filter(None, (report.last_event, last)))

    # Days moved to the lake: their numbers were kept when they were verified.
    for table in (DELTAS, SNAPSHOTS, TRADES):
        for kept in reads.lake_market_days(table, market_ticker, start_date, end_date):
            report = days[kept.day]
            setattr(report, table.name, getattr(report, table.name) + kept.rows)
            report.first_event = min(filter(None, (report.first_event, kept.first_at)))
            report.last_event = max(filter(None, (report.last_event, kept.last_at)))

    gaps = market_gaps(market_ticker).filter(overlapping(start, end)).order_by("detected_at", "id")
    for gap in gaps:
        gap_end = gap.recovered_at or now
        day = max(gap.detected_at.astimezone(timezone.utc).date(), start_date)
        while day <= end_date and _midnight(day) < gap_end:
            days[day].gaps.append(gap)
            day += ONE_DAY

    for report in days.values():
        report.gap_seconds = _seconds_inside(report.gaps, report.day, now)
        if report.day >= today:
            report.status = DayStatus.PENDING
        elif not (report.deltas or report.trades or report.snapshots):
            report.status = DayStatus.MISSING
        elif report.gaps:
            report.status = DayStatus.DEGRADED
        else:
            report.status = DayStatus.COMPLETE
    return list(days.values())


def _seconds_inside(gaps: list[SequenceGap], day: date, now: datetime) -> float:
    """How much of `day` lies inside the union of `gaps` (an open gap runs until now)."""
    day_start, day_end = _midnight(day), _midnight(day) + ONE_DAY
    spans = sorted(
        (max(g.detected_at, day_start), min(g.recovered_at or now, day_end)) for g in gaps
    )
    total, covered_until = timedelta(0), day_start
    for begin, finish in spans:
        begin = max(begin, covered_until)
        if finish > begin:
            total += finish - begin
            covered_until = finish
    return total.total_seconds()
