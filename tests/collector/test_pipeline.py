"""The pipeline on recorded-style frames, written to the real database."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from django.db import connection

from collector.commands import (
    BackfillTrades,
    EventCreated,
    MarketCreated,
    MarketDetermined,
    MarketSettled,
    RequestSnapshots,
    Resubscribe,
)
from collector.config import CollectorConfig
from collector.pipeline import Pipeline
from collector.writer import Writer
from markets.book import OrderBook
from markets.models import (
    LifecycleEvent,
    OrderbookDelta,
    OrderbookSnapshot,
    SequenceGap,
    Trade,
)
from markets.replay import book_at

from . import frames as f

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
SESSION = 1_000_000


class StepClock:
    """Each reading is `step` later than the previous one."""

    def __init__(self, start=T0, step=timedelta(milliseconds=10)):
        self.now = start
        self.step = step

    def __call__(self):
        self.now += self.step
        return self.now


@pytest.fixture
def make(tmp_path):
    def build(**config):
        cfg = CollectorConfig(journal_dir=tmp_path / "journal", **config)
        writer = Writer(cfg)
        pipeline = Pipeline(writer, cfg, clock=StepClock())
        pipeline.start_session(SESSION)
        return pipeline, writer

    return build


def feed(pipeline, *raws):
    commands = []
    for raw in raws:
        commands.extend(pipeline.handle(raw))
    return commands


def stored_deltas(ticker):
    return list(
        OrderbookDelta.objects.filter(market_ticker=ticker)
        .order_by("received_at", "session_id", "seq")
        .values_list("seq", "side", "price", "delta")
    )


def assert_replay_matches_live(pipeline, at=None):
    at = at or pipeline._last_received
    for ticker, live in pipeline.books.items():
        if live.reliable:
            rebuilt = book_at(ticker, at)
            assert rebuilt.complete, ticker
            assert rebuilt.book == live.book, ticker


def subscribe_books(pipeline, sid=2, tickers=("A", "B")):
    pipeline.expect_subscription(1, "orderbook_delta", tickers)
    return feed(pipeline, f.subscribed(1, "orderbook_delta", sid))


def test_snapshot_then_interleaved_deltas_on_one_sid(make):
    pipeline, writer = make()
    subscribe_books(pipeline)
    commands = feed(
        pipeline,
        f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]], no=[["0.5500", "5.00"]]),
        f.snapshot(2, 2, "B", no=[["0.3000", "7.00"]]),
        f.delta(2, 3, "A", "yes", "0.4000", "-4.00", ts_ms=1764000000000),
        f.delta(2, 4, "B", "yes", "0.1000", "3.00"),
        f.delta(2, 5, "A", "no", "0.5600", "2.50"),
        f.delta(2, 6, "B", "no", "0.3000", "-7.00"),
    )
    assert commands == []
    writer.flush_sync()
    assert pipeline.books["A"].book == OrderBook.from_levels(
        [["0.4000", "6.00"]], [["0.5500", "5.00"], ["0.5600", "2.50"]])
    assert pipeline.books["B"].book == OrderBook.from_levels([["0.1000", "3.00"]], [])
    assert stored_deltas("A") == [(3, "yes", D("0.4000"), D("-4.00")), (5, "no", D("0.5600"), D("2.50"))]
    assert stored_deltas("B") == [(4, "yes", D("0.1000"), D("3.00")), (6, "no", D("0.3000"), D("-7.00"))]
    snaps = OrderbookSnapshot.objects.order_by("market_ticker")
    assert [(s.market_ticker, s.source, s.seq, s.sid) for s in snaps] == [
        ("A", "subscribe", 1, 2), ("B", "subscribe", 2, 2)]
    assert snaps[1].yes_levels == [] and snaps[1].no_levels == [["0.3000", "7.00"]]
    assert SequenceGap.objects.count() == 0
    assert pipeline.stats()["deltas"] == 4
    assert_replay_matches_live(pipeline)


def test_duplicates_are_dropped_and_counted(make):
    pipeline, writer = make()
    subscribe_books(pipeline)
    d3 = f.delta(2, 2, "A", "yes", "0.4000", "1.00")
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]), d3, d3, f.snapshot(2, 1, "A"))
    writer.flush_sync()
    assert pipeline.counters["duplicates"] == 2
    assert pipeline.books["A"].book.yes == {D("0.4000"): D("11.00")}
    assert OrderbookDelta.objects.count() == 1 and OrderbookSnapshot.objects.count() == 1


def test_a_gap_marks_every_ticker_of_the_sid_until_its_snapshot(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A", "B"))
    feed(
        pipeline,
        f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]),
        f.snapshot(2, 2, "B", yes=[["0.2000", "1.00"]]),
        f.delta(2, 3, "A", "yes", "0.4000", "1.00"),
    )
    # seq 4 and 5 are lost.
    last_frame_at = pipeline._last_received
    commands = feed(pipeline, f.delta(2, 6, "A", "yes", "0.4000", "100.00"))
    # The gap begins just after the last frame received before the one revealing it.
    detected_at = last_frame_at + timedelta(microseconds=1)
    assert commands == [RequestSnapshots(2, ("A", "B"))]
    commands = feed(
        pipeline,
        f.delta(2, 7, "B", "yes", "0.2000", "100.00"),  # dropped: B unreliable
        f.snapshot(2, 8, "A", yes=[["0.4000", "20.00"]], cmd_id=5),  # resync of A
        f.delta(2, 9, "A", "yes", "0.4000", "1.00"),  # applied again
        f.delta(2, 10, "B", "yes", "0.2000", "100.00"),  # still dropped
    )
    resync_at = pipeline._last_received - timedelta(milliseconds=20)
    assert commands == []
    writer.flush_sync()

    gaps = {g.market_ticker: g for g in SequenceGap.objects.all()}
    assert set(gaps) == {"A", "B"}
    for g in gaps.values():
        assert (g.reason, g.session_id, g.sid, g.expected_seq, g.received_seq) == (
            "seq_gap", SESSION, 2, 4, 6)
        # The books of one sid gap are the rows sharing (session_id, sid, detected_at).
        assert g.detected_at == detected_at and g.tickers_on_sid == []
    assert gaps["A"].recovered_at == resync_at
    assert gaps["B"].recovered_at is None
    assert [s for s, *_ in stored_deltas("A")] == [3, 9]
    assert [s for s, *_ in stored_deltas("B")] == []
    assert OrderbookSnapshot.objects.get(market_ticker="A", seq=8).source == "resync"
    assert pipeline.counters["deltas_dropped"] == 3
    assert not pipeline.books["B"].reliable
    assert pipeline.books["A"].book.yes == {D("0.4000"): D("21.00")}
    # Inside the gap the stored book is marked incomplete; after it, complete.
    assert not book_at("A", detected_at).complete
    assert_replay_matches_live(pipeline)

    # A second gap asks for A; B's request is still outstanding (one per
    # market), and no second open gap is recorded for B.
    commands = feed(pipeline, f.delta(2, 15, "A", "yes", "0.4000", "1.00"))
    assert commands == [RequestSnapshots(2, ("A",))]
    # Unanswered for snapshot_retry_seconds: tick() asks for both again.
    later = pipeline._last_received + timedelta(seconds=pipeline.config.snapshot_retry_seconds)
    assert pipeline.tick(later) == [RequestSnapshots(2, ("A", "B"))]
    assert pipeline.tick(later) == []
    writer.flush_sync()
    assert SequenceGap.objects.filter(market_ticker="B").count() == 1
    assert SequenceGap.objects.filter(market_ticker="A").count() == 2


def test_a_delta_before_any_snapshot_opens_a_gap_and_asks_for_one(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    commands = feed(pipeline, f.delta(2, 1, "A", "yes", "0.4000", "1.00"))
    assert commands == [RequestSnapshots(2, ("A",))]
    feed(pipeline, f.delta(2, 2, "A", "yes", "0.4000", "1.00"), f.snapshot(2, 3, "A"))
    writer.flush_sync()
    gap = SequenceGap.objects.get()
    assert gap.market_ticker == "A" and gap.recovered_at is not None
    assert OrderbookDelta.objects.count() == 0


def test_reconnect_records_a_disconnect_gap_closed_by_the_new_snapshots(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A", "B"))
    pipeline.expect_subscription(1, "trade", ())
    feed(
        pipeline,
        f.subscribed(1, "trade", 3),
        f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]),
        f.snapshot(2, 2, "B"),
        f.trade(3, 1, "A", "t1", "0.4000", "1.00", ts_ms=1764000000000),
    )
    pipeline.end_session()
    dropped_at = pipeline._last_received
    assert pipeline.books == {}

    pipeline.start_session(SESSION + 1)
    pipeline.expect_subscription(1, "orderbook_delta", ("A", "B"))
    pipeline.expect_subscription(1, "trade", ())
    commands = feed(
        pipeline,
        f.subscribed(1, "orderbook_delta", 1),
        f.subscribed(1, "trade", 2),
        f.snapshot(1, 1, "A", yes=[["0.4100", "3.00"]]),
        f.delta(1, 2, "A", "yes", "0.4100", "1.00"),
    )
    assert len(commands) == 1 and isinstance(commands[0], BackfillTrades)
    backfill = commands[0]
    margin = timedelta(seconds=pipeline.config.backfill_margin_seconds)
    # From the last trade seen (its exchange time is earlier than our clock
    # here) to the moment the new trade subscription was confirmed.
    assert backfill.since == datetime.fromtimestamp(1764000000, timezone.utc) - margin
    assert dropped_at < backfill.until - margin < pipeline._last_received
    writer.flush_sync()

    gaps = {(g.market_ticker, g.channel): g for g in SequenceGap.objects.all()}
    assert set(gaps) == {("A", "orderbook_delta"), ("B", "orderbook_delta"), ("", "trade")}
    assert all(g.reason == "disconnect" and g.session_id == SESSION for g in gaps.values())
    assert gaps[("A", "orderbook_delta")].recovered_at is not None
    assert gaps[("B", "orderbook_delta")].recovered_at is None  # no snapshot for B yet
    # A trade hole stays open until its backfill has succeeded; the
    # backfill carries the hole's key to close it.
    trade_gap = gaps[("", "trade")]
    assert trade_gap.recovered_at is None
    assert backfill.gaps == (("", "trade", SESSION, trade_gap.detected_at),)
    new = OrderbookSnapshot.objects.get(session_id=SESSION + 1)
    assert new.source == "subscribe"
    assert_replay_matches_live(pipeline)


def test_fractional_sizes_and_empty_sides(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    feed(
        pipeline,
        f.snapshot(2, 1, "A"),  # no sides at all
        f.delta(2, 2, "A", "yes", "0.0001", "74.77"),
        f.delta(2, 3, "A", "yes", "0.0001", "-0.01"),
        f.delta(2, 4, "A", "no", "0.9999", "0.01"),
        f.delta(2, 5, "A", "no", "0.9999", "-0.01"),  # the side empties again
    )
    writer.flush_sync()
    live = pipeline.books["A"].book
    assert live.yes == {D("0.0001"): D("74.76")} and live.no == {}
    snap = OrderbookSnapshot.objects.get()
    assert snap.yes_levels == [] and snap.no_levels == []
    assert_replay_matches_live(pipeline)


def test_malformed_frames_are_counted_and_never_raise(make, caplog):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    huge = '{"type": "orderbook_delta", "junk": "' + "x" * 5000 + '"'
    commands = feed(
        pipeline,
        f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]),
        "not json at all",
        huge,
        f.delta(2, 2, "A", "yes", "0.4000", "1.00"),
    )
    assert commands == []
    assert pipeline.counters["malformed"] == 2
    assert pipeline.books["A"].book.yes == {D("0.4000"): D("11.00")}
    logged = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(logged) == 2
    assert "not json at all" in logged[0]
    assert f"({len(huge)} chars)" in logged[1] and len(logged[1]) < 700


def test_an_unreadable_numbered_frame_is_a_gap(make):
    """A frame we cannot read consumed a seq: what it said is lost, so the
    next frame reveals a gap and the book is re-baselined."""
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    commands = feed(
        pipeline,
        f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]),
        '{"type":"orderbook_delta","sid":2,"seq":2,"msg":{"market_ticker":"A","side":"yes",'
        '"price_dollars":"0.40001","delta_fp":"1.00"}}',
        f.delta(2, 3, "A", "yes", "0.4000", "1.00"),
    )
    assert pipeline.counters["malformed"] == 1
    assert commands == [RequestSnapshots(2, ("A",))]
    writer.flush_sync()
    assert SequenceGap.objects.get().expected_seq == 2
    assert OrderbookDelta.objects.count() == 0


def test_deltas_straddling_midnight_land_in_two_partitions(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    midnight = datetime(2026, 11, 25, tzinfo=timezone.utc)
    pipeline.handle(f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]), midnight - timedelta(seconds=2))
    pipeline.handle(f.delta(2, 2, "A", "yes", "0.4000", "1.00"), midnight - timedelta(microseconds=1))
    pipeline.handle(f.delta(2, 3, "A", "yes", "0.4000", "2.00"), midnight)
    pipeline.handle(f.delta(2, 4, "A", "no", "0.5000", "2.00"), midnight + timedelta(seconds=1))
    writer.flush_sync()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orderbook_delta_rows_2026_11_24")
        before = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM orderbook_delta_rows_2026_11_25")
        after = cursor.fetchone()[0]
    assert (before, after) == (1, 2)
    assert book_at("A", midnight - timedelta(microseconds=1)).book.yes == {D("0.4000"): D("11.00")}
    assert_replay_matches_live(pipeline)


def test_received_at_never_goes_back(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    at = datetime(2026, 11, 24, 13, tzinfo=timezone.utc)
    pipeline.handle(f.snapshot(2, 1, "A"), at)
    pipeline.handle(f.delta(2, 2, "A", "yes", "0.4000", "1.00"), at)  # same instant
    pipeline.handle(f.delta(2, 3, "A", "yes", "0.4000", "1.00"), at - timedelta(seconds=5))  # clock stepped back
    writer.flush_sync()
    times = list(OrderbookDelta.objects.order_by("seq").values_list("received_at", flat=True))
    assert times == [at + timedelta(microseconds=1), at + timedelta(microseconds=2)]


def test_checkpoints_every_n_deltas_share_the_last_deltas_key(make):
    pipeline, writer = make(checkpoint_every_deltas=3)
    subscribe_books(pipeline, tickers=("A",))
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]))
    for seq in range(2, 10):  # 8 deltas: checkpoints after the 3rd and the 6th
        feed(pipeline, f.delta(2, seq, "A", "yes", "0.4000", "1.00"))
    writer.flush_sync()
    checkpoints = OrderbookSnapshot.objects.filter(source="checkpoint").order_by("received_at")
    assert [c.seq for c in checkpoints] == [4, 7]
    for c in checkpoints:
        d = OrderbookDelta.objects.get(seq=c.seq)
        assert (c.received_at, c.session_id, c.sid) == (d.received_at, d.session_id, d.sid)
    assert checkpoints[1].yes_levels == [["0.4000", "16.00"]]
    result = book_at("A", pipeline._last_received)
    assert result.snapshot.source == "checkpoint" and result.deltas_applied == 2
    assert result.book == pipeline.books["A"].book


def test_a_quiet_market_writes_no_checkpoint_however_long_between_its_deltas(make):
    pipeline, writer = make(checkpoint_every_deltas=1000)
    subscribe_books(pipeline, tickers=("A",))
    start = datetime(2026, 11, 25, 1, tzinfo=timezone.utc)
    pipeline.handle(f.snapshot(2, 1, "A"), start)
    for i in range(6):  # a delta every three hours, all on the same UTC day
        pipeline.handle(f.delta(2, 2 + i, "A", "yes", "0.4000", "1.00"),
                        start + timedelta(hours=3 * i + 1))
    writer.flush_sync()
    assert not OrderbookSnapshot.objects.filter(source="checkpoint").exists()
    assert_replay_matches_live(pipeline)


def test_a_market_checkpoints_at_its_first_delta_of_each_utc_day(make):
    """Every day's partition holds a baseline for each book that changed that day."""
    pipeline, writer = make(checkpoint_every_deltas=1000)
    subscribe_books(pipeline, tickers=("A",))
    start = datetime(2026, 11, 24, 23, 59, 59, tzinfo=timezone.utc)  # after the clock's T0
    pipeline.handle(f.snapshot(2, 1, "A"), start)
    moments = [timedelta(microseconds=999_999),  # 23:59:59.999999: still the 24th
               timedelta(seconds=1),  # 00:00:00.000000 on the 25th: the first of the day
               timedelta(seconds=2), timedelta(days=1, seconds=1), timedelta(days=1, seconds=5)]
    for i, offset in enumerate(moments):
        pipeline.handle(f.delta(2, 2 + i, "A", "yes", "0.4000", "1.00"), start + offset)
    writer.flush_sync()
    checkpoints = OrderbookSnapshot.objects.filter(source="checkpoint").order_by("received_at")
    assert [c.received_at for c in checkpoints] == [
        datetime(2026, 11, 25, tzinfo=timezone.utc),
        datetime(2026, 11, 26, 0, 0, 0, tzinfo=timezone.utc),
    ]
    assert [c.seq for c in checkpoints] == [3, 5]
    # The book during the 26th needs nothing from the 25th's partition.
    result = book_at("A", datetime(2026, 11, 26, 0, 0, 3, tzinfo=timezone.utc))
    assert result.snapshot.received_at.date().isoformat() == "2026-11-26"
    assert_replay_matches_live(pipeline)


def test_replayed_book_equals_live_book_at_every_instant(make):
    """Many markets, random-ish deltas, checkpoints: book_at == live book each time."""
    import random

    rng = random.Random(7)
    pipeline, writer = make(checkpoint_every_deltas=5)
    tickers = [f"M{i}" for i in range(4)]
    subscribe_books(pipeline, tickers=tickers)
    seq = 0
    for t in tickers:
        seq += 1
        feed(pipeline, f.snapshot(2, seq, t, yes=[["0.3000", "5.00"]], no=[["0.6000", "5.00"]]))
    checks = []
    for _ in range(120):
        seq += 1
        t = rng.choice(tickers)
        side = rng.choice(["yes", "no"])
        # A valid book: yes bids up to 0.39 and no bids up to 0.60 never
        # cross, and a level never goes below zero.
        price = D(f"0.{rng.randint(1, 39 if side == 'yes' else 60):02d}00")
        held = (pipeline.books[t].book.yes if side == "yes" else pipeline.books[t].book.no).get(price, D(0))
        size = D(rng.randint(1, 500)) / 100
        if held and rng.random() < 0.5:
            size = -min(held, size)
        feed(pipeline, f.delta(2, seq, t, side, f"{price:.4f}", f"{size:.2f}"))
        if rng.random() < 0.1:
            checks.append((pipeline._last_received, t, pipeline.books[t].book.copy()))
    writer.flush_sync()
    assert pipeline.counters["checkpoints"] > 5
    for at, t, expected in checks:
        assert book_at(t, at).book == expected
    assert_replay_matches_live(pipeline)


def test_a_trade_gap_asks_for_a_backfill_of_the_window(make):
    pipeline, writer = make()
    pipeline.expect_subscription(1, "trade", ())
    feed(pipeline, f.subscribed(1, "trade", 3))
    feed(pipeline, f.trade(3, 1, "A", "t1", "0.4000", "1.00", ts_ms=1764000000000))
    last_at = pipeline._last_received
    commands = feed(pipeline, f.trade(3, 4, "A", "t4", "0.4100", "2.50", ts_ms=1764000005000))
    at = pipeline._last_received
    assert len(commands) == 1
    backfill = commands[0]
    margin = timedelta(seconds=pipeline.config.backfill_margin_seconds)
    exchange_ts = datetime.fromtimestamp(1764000000, timezone.utc)
    assert backfill.since == min(last_at, exchange_ts) - margin
    assert backfill.until == max(at, datetime.fromtimestamp(1764000005, timezone.utc)) + margin
    writer.flush_sync()
    gap = SequenceGap.objects.get()
    assert (gap.market_ticker, gap.channel, gap.expected_seq, gap.received_seq) == ("", "trade", 2, 4)
    assert gap.recovered_at is None  # until its backfill has succeeded
    assert backfill.gaps == (("", "trade", gap.session_id, gap.detected_at),)
    assert Trade.objects.count() == 2
    t4 = Trade.objects.get(trade_id="t4")
    assert (t4.yes_price, t4.no_price, t4.count, t4.source) == (D("0.4100"), D("0.5900"), D("2.50"), "ws")


def test_lifecycle_rows_and_commands(make):
    pipeline, writer = make()
    pipeline.expect_subscription(1, "market_lifecycle_v2", ())
    commands = feed(
        pipeline,
        f.subscribed(1, "market_lifecycle_v2", 4),
        f.lifecycle(4, 1, "X-1", "created", open_ts=1, close_ts=2,
                    additional_metadata={"event_ticker": "X"}),
        f.lifecycle(4, 2, "X-1", "determined", result="yes", settlement_value="1.0000",
                    determination_ts=1764000000),
        f.lifecycle(4, 3, "X-1", "settled", settled_ts=1764000100),
        f.dump({"type": "event_lifecycle", "sid": 4, "seq": 4, "msg": {
            "event_ticker": "X", "series_ticker": "S", "title": "t", "subtitle": "",
            "collateral_return_type": "", "exchange_index": 0}}),
        f.lifecycle(4, 9, "X-2", "activated", is_deactivated=False),  # after a gap
    )
    assert [type(c) for c in commands] == [MarketCreated, MarketDetermined, MarketSettled, EventCreated]
    assert commands[1] == MarketDetermined(
        "X-1", "yes", D("1.0000"), datetime.fromtimestamp(1764000000, timezone.utc))
    writer.flush_sync()
    assert list(LifecycleEvent.objects.values_list("market_ticker", "event_type")) == [
        ("X-1", "created"), ("X-1", "determined"), ("X-1", "settled"), ("", "event_created"),
        ("X-2", "activated")]
    gap = SequenceGap.objects.get()
    assert (gap.market_ticker, gap.channel, gap.expected_seq, gap.received_seq) == (
        "", "market_lifecycle_v2", 5, 9)


def test_terminal_error_records_gaps_and_resubscribes(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A", "B"))
    feed(pipeline, f.snapshot(2, 1, "A"), f.snapshot(2, 2, "B"))
    commands = feed(pipeline, f.error(25, "Subscription buffer overflow", sid=2, seq=3))
    assert commands == [Resubscribe("orderbook_delta", ("A", "B"))]
    assert pipeline.books == {}
    # Deltas of the dead sid are not applied.
    feed(pipeline, f.delta(2, 4, "A", "yes", "0.4000", "1.00"))
    writer.flush_sync()
    assert {g.reason for g in SequenceGap.objects.all()} == {"terminal_error"}
    assert SequenceGap.objects.count() == 2
    assert OrderbookDelta.objects.count() == 0
    assert pipeline.counters["error_25"] == 1


def test_ok_list_changes_the_tickers_of_a_sid(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A", "B"))
    feed(pipeline, f.snapshot(2, 1, "A"), f.snapshot(2, 2, "B"))
    feed(pipeline, f.ok(2, 3, ["A"], cmd_id=9))  # B was removed
    assert set(pipeline.books) == {"A"}
    feed(pipeline, f.dump({"id": 10, "sid": 2, "seq": 4, "type": "unsubscribed"}))
    assert pipeline.books == {}


def test_yes_scale_no_prices_are_stored_as_no_leg_prices(make):
    """With use_yes_price on, a NO bid at 30c arrives as 0.7000: it is stored as 0.3000."""
    pipeline, writer = make(use_yes_price=True)
    subscribe_books(pipeline, tickers=("A",))
    feed(
        pipeline,
        f.snapshot(2, 1, "A", yes=[["0.4000", "1.00"]], no=[["0.7000", "5.00"]]),
        f.delta(2, 2, "A", "no", "0.7000", "-1.00"),
        f.delta(2, 3, "A", "yes", "0.4000", "1.00"),
    )
    writer.flush_sync()
    assert pipeline.books["A"].book.no == {D("0.3000"): D("4.00")}
    assert pipeline.books["A"].book.yes == {D("0.4000"): D("2.00")}
    assert OrderbookSnapshot.objects.get().no_levels == [["0.3000", "5.00"]]
    assert stored_deltas("A") == [(2, "no", D("0.3000"), D("-1.00")), (3, "yes", D("0.4000"), D("1.00"))]
    assert_replay_matches_live(pipeline)


def test_every_spec_example_goes_through_the_pipeline_into_the_database(make):
    from tests.kalshi.test_messages import ALL_EXAMPLES

    pipeline, writer = make()
    # The examples do not form one stream (sids and seqs are reused), so
    # each comes on a connection of its own.
    for i, (_, payload) in enumerate(ALL_EXAMPLES):
        pipeline.start_session(SESSION + 1 + i)
        pipeline.handle(f.dump(payload))
    writer.flush_sync()
    assert pipeline.counters["malformed"] == 0
    assert writer.counters["batches_rejected"] == 0 and writer.journal.count == 0
    assert Trade.objects.filter(trade_id="d91bc706-ee49-470d-82d8-11418bda6fed").count() == 1
    assert OrderbookSnapshot.objects.filter(market_ticker="FED-23DEC-T3.00").exists()
    assert LifecycleEvent.objects.filter(event_type="created").exists()


def test_archived_frames_without_sid_or_seq_are_stored(make):
    pipeline, writer = make(checkpoint_every_deltas=2)
    feed(
        pipeline,
        '{"type":"orderbook_snapshot","msg":{"market_ticker":"A","yes":[[40,10]]}}',
        '{"type":"orderbook_delta","msg":{"market_ticker":"A","price":40,"delta":-4,"side":"yes"}}',
        '{"type":"orderbook_delta","msg":{"market_ticker":"A","price":41,"delta":1,"side":"yes"}}',
    )
    writer.flush_sync()
    assert writer.counters["batches_rejected"] == 0
    assert OrderbookDelta.objects.count() == 2
    assert OrderbookSnapshot.objects.filter(source="checkpoint").count() == 1
    assert_replay_matches_live(pipeline)


def test_terminal_error_on_the_trade_channel_backfills_the_break(make):
    pipeline, writer = make()
    pipeline.expect_subscription(1, "trade", ())
    feed(pipeline, f.subscribed(1, "trade", 3),
         f.trade(3, 1, "A", "t1", "0.4000", "1.00", ts_ms=1764000000000))
    commands = feed(pipeline, f.error(10, "Channel error", sid=3, seq=2))
    assert commands == [Resubscribe("trade", ())]
    feed(pipeline, f.trade(3, 3, "A", "late", "0.4000", "1.00", ts_ms=1764000001000))  # dead sid
    pipeline.expect_subscription(2, "trade", ())
    commands = feed(pipeline, f.subscribed(2, "trade", 5))
    assert len(commands) == 1 and isinstance(commands[0], BackfillTrades)
    margin = timedelta(seconds=pipeline.config.backfill_margin_seconds)
    assert commands[0].since == datetime.fromtimestamp(1764000000, timezone.utc) - margin
    writer.flush_sync()
    gap = SequenceGap.objects.get()
    assert (gap.market_ticker, gap.channel, gap.reason) == ("", "trade", "terminal_error")
    assert gap.recovered_at is None  # until its backfill has succeeded
    assert commands[0].gaps == (("", "trade", gap.session_id, gap.detected_at),)
    assert list(Trade.objects.values_list("trade_id", flat=True)) == ["t1"]
