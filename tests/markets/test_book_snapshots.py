"""Book snapshots at an interval: one forward pass that equals book_at at every point."""

from datetime import date, datetime, timedelta, timezone

import pytest

from markets.book_snapshots import book_snapshots, boundaries, parse_interval
from markets.replay import book_at
from tests.recorded import HOT, QUIET, record_day

DAY = date(2026, 11, 21)


def test_intervals_from_one_second_to_one_day():
    assert parse_interval("1s") == timedelta(seconds=1)
    assert parse_interval("15m") == timedelta(minutes=15)
    assert parse_interval("4h") == timedelta(hours=4)
    assert parse_interval("1d") == timedelta(days=1)
    for bad in ("", "0s", "2d", "1w", "1.5h", "m", "-1m", "25h"):
        with pytest.raises(ValueError):
            parse_interval(bad)


def test_boundaries_are_multiples_of_the_interval_in_a_half_open_range():
    start = datetime(2026, 11, 21, 10, 0, 30, tzinfo=timezone.utc)
    points = list(boundaries(start, start + timedelta(minutes=3), timedelta(minutes=1)))
    assert [p.strftime("%H:%M:%S") for p in points] == ["10:01:00", "10:02:00", "10:03:00"]
    aligned = list(boundaries(start, start + timedelta(seconds=2), timedelta(seconds=1)))
    assert aligned == [start, start + timedelta(seconds=1)]


@pytest.mark.django_db
@pytest.mark.parametrize("ticker", [HOT, QUIET])
def test_every_point_equals_book_at_across_a_gap_and_a_new_session(ticker):
    record = record_day(DAY)
    start = record.first - timedelta(seconds=2)  # before the first snapshot
    points = list(book_snapshots(market_ticker=ticker, start_time=start,
                                 end_time=record.last + timedelta(seconds=2),
                                 interval=timedelta(seconds=1), depth=1000))
    assert len(points) > 40
    assert not points[0].complete  # nothing recorded yet
    for point in points:
        expected = book_at(ticker, point.at)
        assert dict(point.yes) == expected.book.yes and dict(point.no) == expected.book.no
        assert point.complete == expected.complete, point.at
        assert point.gap == expected.gap
    if ticker == HOT:
        assert any(p.gap == record.gap for p in points)


@pytest.mark.django_db
def test_depth_keeps_the_best_levels_first():
    record = record_day(DAY)
    at = record.last
    point = next(book_snapshots(market_ticker=HOT, start_time=at, end_time=at + timedelta(
        seconds=1), interval=timedelta(seconds=1), depth=2))
    full = book_at(HOT, point.at).book
    assert point.yes == full.levels("yes", 2) and point.no == full.levels("no", 2)
    assert point.yes_bid == full.best_bid("yes") and point.yes_ask == full.best_ask("yes")
