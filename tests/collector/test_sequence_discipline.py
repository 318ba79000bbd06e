"""Sequence discipline: replies cannot fool the detector; bad frames and
impossible books are gaps; a gap begins at the last frame received."""

from datetime import timedelta
from decimal import Decimal as D

import pytest

from collector.commands import RequestSnapshots
from collector.sequencer import CONSUME_PROOF, Sequencer, Verdict
from markets.models import OrderbookDelta, SequenceGap

from . import frames as f
from .test_pipeline import feed, make, subscribe_books  # noqa: F401 - `make` is a fixture

pytestmark = pytest.mark.django_db


def test_a_consumed_reply_seq_is_uncertain_until_consume_is_proven_then_in_order():
    seqr = Sequencer()
    seqr.subscribed(1, 2, "orderbook_delta")
    assert seqr.check(1, 2, 1).verdict is Verdict.IN_ORDER
    assert seqr.reply_convention(1) == "unknown"
    # Number 2 taken by a reply, or a lost frame a "peek" reply announced:
    # not known yet, so uncertain (books checked against snapshots), CONSUME_PROOF times.
    seq = 1
    for _ in range(CONSUME_PROOF):
        seqr.reply(1, 2, seq + 1)
        outcome = seqr.check(1, 2, seq + 2)
        assert outcome.verdict is Verdict.UNCERTAIN
        assert (outcome.expected, outcome.received) == (seq + 1, seq + 2)
        seq += 2
    assert seqr.reply_convention(1) == "consume"
    seqr.reply(1, 2, seq + 1)  # the ok took that number
    assert seqr.check(1, 2, seq + 2).verdict is Verdict.IN_ORDER
    # A real loss is still a gap.
    assert seqr.check(1, 2, seq + 4).verdict is Verdict.GAP


def test_a_lost_frame_announced_by_a_peek_reply_is_never_taken_for_consume():
    """The hostile end-to-end test's wrong book: on a "peek" connection the data
    frame a reply announced was lost, and the skip looked like "consume"."""
    seqr = Sequencer()
    seqr.subscribed(1, 2, "orderbook_delta")
    seqr.check(1, 2, 1)
    seqr.reply(1, 2, 2)  # peek: announces that the next data frame is 2; frame 2 is lost
    assert seqr.check(1, 2, 3).verdict is Verdict.UNCERTAIN  # never IN_ORDER
    seqr.reply(1, 2, 4)
    assert seqr.check(1, 2, 4).verdict is Verdict.IN_ORDER  # the peek is proven now
    assert seqr.reply_convention(1) == "peek"


def test_a_peeked_reply_seq_does_not_make_the_next_frame_a_duplicate():
    seqr = Sequencer()
    seqr.subscribed(1, 2, "orderbook_delta")
    seqr.check(1, 2, 1)
    seqr.reply(1, 2, 2)  # the ok carried the next data frame's number
    assert seqr.check(1, 2, 2).verdict is Verdict.IN_ORDER
    assert seqr.reply_convention(1) == "peek"
    # Once "peek" is proven, a data frame skipping a reply's number is a gap.
    seqr.reply(1, 2, 3)
    assert seqr.check(1, 2, 4).verdict is Verdict.GAP


def test_a_wrong_book_after_an_uncertain_skip_proves_peek():
    seqr = Sequencer()
    seqr.subscribed(1, 2, "orderbook_delta")
    seqr.check(1, 2, 1)
    seqr.reply(1, 2, 2)
    assert seqr.check(1, 2, 3).verdict is Verdict.UNCERTAIN
    seqr.prove_peek(1)
    assert seqr.reply_convention(1) == "peek"
    seqr.reply(1, 2, 4)
    assert seqr.check(1, 2, 5).verdict is Verdict.GAP


def test_two_replies_with_one_number_prove_peek():
    seqr = Sequencer()
    seqr.subscribed(1, 2, "orderbook_delta")
    seqr.check(1, 2, 1)
    seqr.reply(1, 2, 2)
    seqr.reply(1, 2, 2)
    assert seqr.reply_convention(1) == "peek"


@pytest.mark.parametrize("convention", ["consume", "peek"])
def test_replies_with_seq_never_drop_data_in_the_pipeline(make, convention):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]))
    if convention == "consume":
        pipeline.sequencer._consume_votes[pipeline.session_id] = CONSUME_PROOF  # proven earlier
        feed(pipeline, f.ok(2, 2, ["A"]), f.delta(2, 3, "A", "yes", "0.4000", "1.00"),
             f.error(12, "x", sid=2, seq=4), f.delta(2, 5, "A", "yes", "0.4000", "1.00"))
    else:
        feed(pipeline, f.ok(2, 2, ["A"]), f.delta(2, 2, "A", "yes", "0.4000", "1.00"),
             f.error(12, "x", sid=2, seq=3), f.delta(2, 3, "A", "yes", "0.4000", "1.00"))
    writer.flush_sync()
    assert pipeline.counters["duplicates"] == 0 and pipeline.counters["gaps"] == 0
    assert OrderbookDelta.objects.count() == 2
    assert pipeline.books["A"].book.yes == {D("0.4000"): D("12.00")}
    assert SequenceGap.objects.count() == 0


def test_an_uncertain_skip_on_a_consume_connection_checks_the_books_and_leaves_no_hole(make):
    pipeline, writer = make()
    subscribe_books(pipeline)
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]),
         f.snapshot(2, 2, "B", yes=[["0.3000", "10.00"]]))
    # The ok took number 3 (consume, not proven yet); delta 4 skips it.
    commands = feed(pipeline, f.ok(2, 3, ["A", "B"]), f.delta(2, 4, "A", "yes", "0.4000", "1.00"))
    assert commands == [RequestSnapshots(2, ("A", "B"))]
    assert pipeline.books["A"].reliable and pipeline.books["B"].reliable  # deltas still kept
    feed(pipeline, f.delta(2, 5, "B", "yes", "0.3000", "-2.00"),
         f.snapshot(2, 6, "A", yes=[["0.4000", "11.00"]]),
         f.snapshot(2, 7, "B", yes=[["0.3000", "8.00"]]))
    writer.flush_sync()
    assert SequenceGap.objects.count() == 0
    assert pipeline.counters["reply_skip_books_clean"] == 2 and pipeline.counters["gaps"] == 0
    assert OrderbookDelta.objects.count() == 2
    assert pipeline.sequencer.reply_convention(pipeline.session_id) == "unknown"  # one vote


def test_a_frame_lost_at_a_peek_replys_number_is_a_hole_from_the_skip(make):
    """The frame the reply announced (3, for A) is lost: delta 4 (B) skips
    exactly the reply's number. A's snapshot shows the loss; B's does not."""
    pipeline, writer = make()
    subscribe_books(pipeline)
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]),
         f.snapshot(2, 2, "B", yes=[["0.3000", "10.00"]]), f.ok(2, 3, ["A", "B"]))
    before = pipeline._last_received
    commands = feed(pipeline, f.delta(2, 4, "B", "yes", "0.3000", "1.00"))
    assert commands == [RequestSnapshots(2, ("A", "B"))]
    feed(pipeline, f.snapshot(2, 5, "A", yes=[["0.4000", "13.00"]]))  # +3 was frame 3
    checked_at = pipeline._last_received
    feed(pipeline, f.snapshot(2, 6, "B", yes=[["0.3000", "11.00"]]))
    writer.flush_sync()
    gap = SequenceGap.objects.get()
    assert (gap.market_ticker, gap.reason, gap.expected_seq, gap.received_seq) == ("A", "seq_gap", 3, 4)
    assert gap.detected_at == before + timedelta(microseconds=1)
    assert gap.recovered_at == checked_at
    assert pipeline.counters["reply_skip_books_lost"] == 1 and pipeline.counters["reply_skip_books_clean"] == 1
    assert pipeline.sequencer.reply_convention(pipeline.session_id) == "peek"
    assert pipeline.books["A"].book.yes == {D("0.4000"): D("13.00")}


def test_a_book_that_leaves_before_its_check_is_a_hole_from_the_skip(make):
    pipeline, writer = make()
    subscribe_books(pipeline)
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]),
         f.snapshot(2, 2, "B", yes=[["0.3000", "10.00"]]), f.ok(2, 3, ["A", "B"]))
    before = pipeline._last_received
    feed(pipeline, f.delta(2, 4, "B", "yes", "0.3000", "1.00"))
    # A is unsubscribed (its market settled) and the connection drops before
    # either snapshot came: both holes begin at the uncertain skip.
    feed(pipeline, f.ok(2, 5, ["B"]))
    pipeline.end_session()
    writer.flush_sync()
    gaps = {g.market_ticker: g for g in SequenceGap.objects.all()}
    assert gaps["A"].detected_at == gaps["B"].detected_at == before + timedelta(microseconds=1)
    assert gaps["A"].recovered_at is not None and gaps["B"].reason == "disconnect"


def test_a_malformed_frame_consumes_its_seq_and_gaps_only_a_known_ticker(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A", "B"))
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]),
         f.snapshot(2, 2, "B", yes=[["0.3000", "10.00"]]))
    bad_unknown = '{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"Z","side":"up"}}'
    assert feed(pipeline, bad_unknown) == []
    # seq 3 was used up: seq 4 is in order, no gap for anybody.
    assert feed(pipeline, f.delta(2, 4, "B", "yes", "0.3000", "1.00")) == []
    bad_a = '{"type":"orderbook_delta","sid":2,"seq":5,"msg":{"market_ticker":"A","side":"up"}}'
    assert feed(pipeline, bad_a) == [RequestSnapshots(2, ("A",))]
    assert feed(pipeline, f.delta(2, 6, "B", "yes", "0.3000", "1.00")) == []
    writer.flush_sync()
    gap = SequenceGap.objects.get()
    assert (gap.market_ticker, gap.reason, gap.recovered_at) == ("A", "malformed", None)
    assert pipeline.books["B"].reliable and not pipeline.books["A"].reliable


def test_a_level_below_zero_is_an_invalid_book(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]))
    before = pipeline._last_received
    commands = feed(pipeline, f.delta(2, 2, "A", "yes", "0.4000", "-11.00"))
    assert commands == [RequestSnapshots(2, ("A",))]
    # A second bad delta while the request is outstanding asks nothing more.
    assert feed(pipeline, f.delta(2, 3, "A", "yes", "0.4000", "-1.00")) == []
    feed(pipeline, f.snapshot(2, 4, "A", yes=[["0.4000", "2.00"]]))
    writer.flush_sync()
    gap = SequenceGap.objects.get()
    assert gap.reason == "invalid_book" and gap.detected_at == before + timedelta(microseconds=1)
    assert gap.recovered_at is not None
    assert OrderbookDelta.objects.count() == 0


def test_a_crossed_book_is_an_invalid_book(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]], no=[["0.5500", "1.00"]]))
    assert feed(pipeline, f.delta(2, 2, "A", "no", "0.5900", "1.00")) == []  # 0.99: fine
    assert feed(pipeline, f.delta(2, 3, "A", "yes", "0.4200", "1.00")) == [RequestSnapshots(2, ("A",))]
    writer.flush_sync()
    assert SequenceGap.objects.get().reason == "invalid_book"


def test_a_dropped_connection_is_a_gap_from_its_last_frame(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A",))
    feed(pipeline, f.snapshot(2, 1, "A", yes=[["0.4000", "10.00"]]))
    last = pipeline._last_received
    for _ in range(50):
        pipeline._stamp(None)  # time passes with no frame (a half-open socket)
    pipeline.end_session()
    writer.flush_sync()
    assert SequenceGap.objects.get().detected_at == last + timedelta(microseconds=1)


def test_a_malformed_frame_whose_ticker_cannot_be_read_is_a_gap_of_its_sid(make):
    pipeline, writer = make()
    subscribe_books(pipeline, tickers=("A", "B"))
    feed(pipeline, f.snapshot(2, 1, "A"), f.snapshot(2, 2, "B"))
    commands = feed(pipeline, '{"type":"orderbook_delta","sid":2,"seq":3,"msg":"garbage"}')
    assert commands == [RequestSnapshots(2, ("A", "B"))]
    writer.flush_sync()
    assert sorted(SequenceGap.objects.values_list("market_ticker", flat=True)) == ["A", "B"]
