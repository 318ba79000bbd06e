"""The replay stream: opening books, arrival order, gaps, and the book it rebuilds."""

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection

from markets.book import OrderBook
from markets.replay import book_at
from markets.replay_stream import iso_utc, replay_events
from tests.recorded import EVENT, HOT, OTHER, QUIET, record_day

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)


@pytest.fixture
def record():
    return record_day(DAY)


def _apply(books: dict, event: dict) -> None:
    """What a client does with each line: a snapshot replaces, a delta adds."""
    ticker = event.get("market_ticker")
    if event["type"] == "snapshot":
        books[ticker] = OrderBook.from_levels(event["yes"], event["no"])
    elif event["type"] == "delta":
        books[ticker].apply_delta(event["side"], Decimal(event["price"]), Decimal(event["delta"]))


def test_applying_the_stream_gives_book_at_at_random_instants(record):
    """From its first line, the stream rebuilds book_at() at any instant, in every market."""
    rng = random.Random(3)
    start = record.instants[200] + timedelta(microseconds=1)
    end = record.instants[-40]
    inside = [t for t in record.instants if start <= t < end]
    # instants exactly at an event, and between two events
    checks = sorted(set(rng.sample(inside, 40)) | {t + timedelta(microseconds=3) for t in
                                                      rng.sample(inside, 20)})
    books: dict = {}
    pending = iter(checks)
    check = next(pending)
    compared = 0
    for event in replay_events(market_tickers=[HOT, QUIET], start_time=start, end_time=end,
                               batch_size=37):
        while check is not None and event["received_at"] > iso_utc(check):
            for ticker in (HOT, QUIET):
                assert books[ticker] == book_at(ticker, check).book, (ticker, check)
            compared += 1
            check = next(pending, None)
        _apply(books, event)
    assert compared > 30


def test_the_stream_opens_with_each_book_at_start_time(record):
    start = record.instants[500]
    events = list(replay_events(market_tickers=[QUIET, HOT], start_time=start,
                                end_time=start + timedelta(seconds=1)))
    first, second = events[0], events[1]
    assert [first["market_ticker"], second["market_ticker"]] == [QUIET, HOT]
    assert first["type"] == second["type"] == "snapshot" and first["source"] == "start"
    before = book_at(HOT, start - timedelta(microseconds=1))
    assert OrderBook.from_levels(second["yes"], second["no"]) == before.book
    assert second["complete"] is True and second["received_at"] == iso_utc(start)


def test_deltas_come_in_the_stored_order_with_exact_fields(record):
    events = list(replay_events(market_tickers=[HOT, QUIET, OTHER], start_time=record.first,
                                end_time=record.last + timedelta(seconds=1), batch_size=50))
    streamed = [e for e in events if e["type"] == "delta"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT market_ticker, received_at, session_id, sid, seq, side, price::text,"
            " delta::text, ts FROM orderbook_deltas WHERE received_at >= %s AND received_at < %s"
            " ORDER BY received_at, session_id, seq",
            [record.first, record.last + timedelta(seconds=1)],
        )
        stored = cursor.fetchall()
    assert len(streamed) == len(stored) == record.deltas
    assert [
        (e["market_ticker"], e["received_at"], e["session_id"], e["sid"], e["seq"], e["side"],
         e["price"], e["delta"], e["ts"]) for e in streamed
    ] == [(r[0], iso_utc(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], iso_utc(r[8]))
          for r in stored]
    # the whole stream, all types, never goes back in receive time
    times = [e["received_at"] for e in events]
    assert times == sorted(times)


def test_trades_and_lifecycle_are_in_the_stream_in_receive_order(record):
    events = list(replay_events(market_tickers=[HOT, QUIET, OTHER], start_time=record.first,
                                end_time=record.last + timedelta(seconds=1), batch_size=11))
    trades = [e for e in events if e["type"] == "trade"]
    assert len(trades) == record.trades
    assert all(e["ts"] <= e["received_at"] for e in trades)
    assert {"yes_price", "no_price", "count", "trade_id", "taker_outcome_side"} <= set(trades[0])
    assert len(trades[0]["yes_price"]) == 6 and "." in trades[0]["count"]  # "0.5600", "12.00"
    lifecycle = [e for e in events if e["type"] == "lifecycle"]
    assert lifecycle[-1]["market_ticker"] == "" and lifecycle[-1]["event_ticker"] == EVENT
    assert "\n" in lifecycle[0]["payload"]["yes_sub_title"]


def test_only_the_types_asked_for(record):
    events = list(replay_events(market_tickers=[HOT], start_time=record.first,
                                end_time=record.last, types=["trades"]))
    assert events and {e["type"] for e in events} == {"trade"}
    assert {e["market_ticker"] for e in events} == {HOT}


def test_a_recorded_gap_appears_and_is_followed_by_a_rebaseline(record):
    events = list(replay_events(market_tickers=[HOT], start_time=record.first,
                                end_time=record.last + timedelta(seconds=1)))
    kinds = [(e["type"], e.get("source"), e.get("reason")) for e in events]
    gap_index = kinds.index(("gap", None, "seq_gap"))
    gap = events[gap_index]
    assert gap["start"] == iso_utc(record.gap.detected_at)
    assert gap["end"] == iso_utc(record.gap.recovered_at)
    assert gap["duration_seconds"] == (record.gap.recovered_at
                                       - record.gap.detected_at).total_seconds()
    after = [e for e in events[gap_index + 1:] if e["type"] in ("delta", "snapshot")]
    assert after[0]["type"] == "snapshot" and after[0]["source"] == "resync"
    # the disconnect and the new session's subscribe snapshot
    assert ("gap", None, "disconnect") in kinds
    assert any(e["type"] == "snapshot" and e["source"] == "subscribe" and
               e["session_id"] == 2_000_000 for e in events)


def test_a_stream_that_starts_inside_a_gap_says_its_book_is_incomplete(record):
    inside = record.gap.detected_at + (record.gap.recovered_at - record.gap.detected_at) / 2
    first = next(replay_events(market_tickers=[HOT], start_time=inside,
                               end_time=record.gap.recovered_at + timedelta(seconds=1)))
    assert first["complete"] is False and first["gap"]["reason"] == "seq_gap"


def test_no_data_yet_gives_an_empty_incomplete_opening_book():
    events = list(replay_events(market_tickers=["NOPE"], start_time=_day(0), end_time=_day(1)))
    assert len(events) == 1
    assert events[0]["complete"] is False and events[0]["yes"] == events[0]["no"] == []


def _day(hours):
    from datetime import datetime, timezone

    return datetime(2026, 11, 1, hours, tzinfo=timezone.utc)


def test_a_stream_of_today_that_outlives_midnight_keeps_the_deltas_packed_under_it(monkeypatch):
    """`archive` may pack the day while its stream is read: the rest comes from the chunks."""
    from markets.record import packs

    today = datetime.now(timezone.utc).date()
    record = record_day(today)
    events = replay_events(market_tickers=[HOT], start_time=record.first,
                           end_time=record.last + timedelta(seconds=1), batch_size=20)
    streamed = []
    for event in events:
        if event["type"] == "delta":
            streamed.append(event)
            if len(streamed) == 3:  # the first batch is read: now midnight passes
                break
    monkeypatch.setattr(packs, "may_be_packed", lambda start: True)
    assert packs.pack_day(today) > 0
    streamed += [e for e in events if e["type"] == "delta"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT received_at, session_id, seq FROM orderbook_deltas "
                       "WHERE market_ticker = %s ORDER BY received_at, session_id, seq", [HOT])
        stored = [(iso_utc(r[0]), r[1], r[2]) for r in cursor.fetchall()]
    assert len(stored) > 20
    assert [(e["received_at"], e["session_id"], e["seq"]) for e in streamed] == stored
