"""`kalshi_replay` serves a day moved to the Parquet lake exactly as it served it from PostgreSQL.

The replay reads the record through the replay stream (markets/replay_stream.py),
which reads dropped days from the lake (markets/record/reads.py): every event the
replayed exchange hands its clients, and every book it ends with, is the same
before and after `archive` drops the day's partitions.
"""

from datetime import date, datetime, timedelta, timezone

import pytest
from django.core.management import call_command

from markets.models import LakeDay
from simulator.recorded import RecordedExchange
from tests.recorded import HOT, QUIET, record_day

pytestmark = pytest.mark.django_db

OLD, NEW = date(2026, 11, 19), date(2026, 11, 20)
START = datetime(2026, 11, 19, 23, 59, 30, tzinfo=timezone.utc)  # the record spans midnight


def replayed(start, end):
    # In this process: the test's rows are in its open transaction, which a
    # reader process could not see.
    exchange = RecordedExchange([HOT, QUIET], start, end, in_process=True)
    exchange.fill(exchange.end_us + 1)
    events = []
    while not exchange.done:
        events += [repr(event) for event in exchange.advance_to(exchange.end_us)]
    books = {t: (exchange.book_known(t), exchange.book(t).snapshot_levels()) for t in (HOT, QUIET)}
    return events, books, [repr(trade) for trade in exchange.trades]


def test_a_day_in_the_lake_replays_the_same_events_and_books(settings, tmp_path):
    settings.LAKE_URL = str(tmp_path / "lake")
    record = record_day(OLD, start=START)
    start, end = record.first - timedelta(seconds=1), record.last + timedelta(seconds=1)
    before = replayed(start, end)
    events, books, trades = before
    assert len(events) > 1500 and trades
    assert any(e.startswith("BookHole(") for e in events) and any(e.startswith("BookRecovered(") for e in events)

    today = datetime.now(timezone.utc).date()
    call_command("archive", "--older-than", f"{(today - NEW).days}d")
    assert LakeDay.objects.get(table="deltas", day=OLD).dropped_at is not None

    assert replayed(start, end) == before
