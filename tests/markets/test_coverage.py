"""Coverage per market and UTC day: statuses, counts, gaps."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from markets import ingest
from markets.coverage import coverage
from markets.models import SequenceGap
from tests.recorded import HOT, record_day

pytestmark = pytest.mark.django_db

D1 = date(2026, 11, 10)


def _at(day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


def _clean_day(ticker, day):
    ingest.snapshots_ingest([(ticker, _at(day, 9), 1, 1, 1, "subscribe", [["0.4000", "1.00"]],
                              [], None)])
    ingest.deltas_ingest([(ticker, _at(day, 9, m), 1, 1, m + 1, "yes", D("0.4100"), D("2.00"),
                           None) for m in range(1, 6)])
    ingest.trades_ingest([(ticker, _at(day, 23, 59), "t1", D("0.4100"), D("0.5900"), D("1.00"),
                           "yes", "bid", None, False, _at(day, 23, 59), "ws")])


def test_gap_day_is_degraded_empty_day_missing_today_pending():
    record = record_day(D1)
    now = _at(D1 + timedelta(days=2), 12)
    days = coverage(market_ticker=HOT, start_date=D1 - timedelta(days=1),
                    end_date=D1 + timedelta(days=2), now=now)
    assert [d.status for d in days] == ["missing", "degraded", "missing", "pending"]
    gap_day = days[1]
    assert gap_day.deltas > 0 and gap_day.trades > 0 and gap_day.snapshots > 0
    assert record.gap in gap_day.gaps and len(gap_day.gaps) == 2  # seq gap + disconnect
    # a trade's exchange time may precede the first frame received
    assert record.first - timedelta(seconds=1) < gap_day.first_event <= record.first
    assert record.last - timedelta(seconds=1) < gap_day.last_event <= record.last
    assert 0 < gap_day.gap_seconds < 10
    assert days[0].first_event is None and days[0].deltas == 0


def test_counts_match_the_tables_and_a_clean_day_is_complete():
    _clean_day("CLEAN", D1)
    (day,) = coverage(market_ticker="CLEAN", start_date=D1, end_date=D1,
                      now=_at(D1 + timedelta(days=1), 1))
    assert day.status == "complete"
    assert (day.deltas, day.trades, day.snapshots) == (5, 1, 1)
    assert day.first_event == _at(D1, 9) and day.last_event == _at(D1, 23, 59)
    assert day.gaps == [] and day.gap_seconds == 0


def test_a_gap_across_midnight_degrades_both_days_for_its_part():
    _clean_day("CLEAN", D1)
    _clean_day("CLEAN", D1 + timedelta(days=1))
    gap = SequenceGap.objects.create(market_ticker="CLEAN", detected_at=_at(D1, 23),
                                     recovered_at=_at(D1 + timedelta(days=1), 1))
    days = coverage(market_ticker="CLEAN", start_date=D1, end_date=D1 + timedelta(days=1),
                    now=_at(D1 + timedelta(days=5), 0))
    assert [d.status for d in days] == ["degraded", "degraded"]
    assert days[0].gaps == days[1].gaps == [gap]
    assert days[0].gap_seconds == days[1].gap_seconds == 3600


def test_a_channel_wide_gap_degrades_every_market():
    _clean_day("CLEAN", D1)
    SequenceGap.objects.create(market_ticker="", channel="trade", detected_at=_at(D1, 12),
                               recovered_at=_at(D1, 12, 5))
    (day,) = coverage(market_ticker="CLEAN", start_date=D1, end_date=D1,
                      now=_at(D1 + timedelta(days=3), 0))
    assert day.status == "degraded" and day.gap_seconds == 300
