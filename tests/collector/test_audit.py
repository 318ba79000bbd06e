"""The audit itself can fail: tiny records written by hand, judged against a hand-made truth.

One market M; the exchange changes its book three times (t1, t2, t3). The
record holds M's subscribe snapshot and the deltas of t1 and t3: the delta
of t2 is lost. Without a gap row that is a silent hole; with one it is not.
"""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from markets import ingest
from markets.book import OrderBook
from markets.models import GapReason, SequenceGap

from .audit import Truth, TrueMarket, TrueTrade, audit

pytestmark = pytest.mark.django_db

M, N = "KXAUDIT-26DEC-M", "KXAUDIT-26DEC-N"
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
RECEIVED = timedelta(milliseconds=10)  # the collector receives each frame 10 ms after it happens
LAG_MS = 100


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ms(seconds: float) -> int:
    return int(at(seconds).timestamp() * 1000)


INITIAL = OrderBook.from_levels([["0.40", "10"]], [["0.50", "5"]])
CHANGES = [(ms(1), "yes", D("0.41"), D("3")), (ms(2), "no", D("0.50"), D("-2")), (ms(3), "yes", D("0.40"), D("-10"))]
TRADES = [TrueTrade("t-1", M, D("0.50"), D("0.50"), D("2"), ms(2)), TrueTrade("t-2", M, D("0.60"), D("0.40"), D("1"), ms(3))]


def truth(*extra_markets) -> Truth:
    markets = {M: TrueMarket(M, ms(-10), ms(3600))}
    markets.update({t: TrueMarket(t, ms(-10), ms(3600)) for t in extra_markets})
    return Truth(markets, {M: INITIAL.copy()}, {M: list(CHANGES)}, list(TRADES))


def store_book(*, lose_second_delta: bool = True) -> None:
    yes, no = INITIAL.snapshot_levels()
    ingest.snapshots_ingest([(M, at(-5), 1, 1, 1, "subscribe", yes, no, None)])
    deltas = []
    for seq, (ts, side, price, delta) in enumerate(CHANGES, start=2):
        if seq == 3 and lose_second_delta:
            continue
        received = datetime.fromtimestamp(ts / 1000, tz=timezone.utc) + RECEIVED
        deltas.append((M, received, 1, 1, seq, side, price, delta, None))
    ingest.deltas_ingest(deltas)


def store_trades(trades) -> None:
    ingest.trades_ingest([
        (t.market_ticker, datetime.fromtimestamp(t.ts_ms / 1000, tz=timezone.utc) + shift, t.trade_id,
         t.yes_price, t.no_price, t.count, "yes", "bid", None, False, at(5), "ws")
        for t, shift in trades
    ])


def gap(ticker=M, *, detected: datetime, recovered: datetime | None, reason=GapReason.SEQ_GAP) -> None:
    SequenceGap.objects.create(market_ticker=ticker, channel="orderbook_delta", reason=reason,
                               session_id=1, sid=1, detected_at=detected, recovered_at=recovered)


def run(**kwargs):
    kwargs.setdefault("samples_per_market", 0)  # only the window's end and the gap edges
    kwargs.setdefault("lag_ms", LAG_MS)
    return audit(kwargs.pop("truth", truth()), at(0), at(5), **kwargs)


def test_a_complete_record_passes():
    store_book(lose_second_delta=False)
    store_trades([(t, timedelta(0)) for t in TRADES])
    result = run(samples_per_market=50)
    assert result.ok, result.summary()
    assert result.samples > 40 and result.silent_holes == 0
    assert result.trades_expected == 2 and result.markets_recorded == 1


def test_a_lost_delta_without_a_gap_row_is_one_silent_hole():
    store_book()
    store_trades([(t, timedelta(0)) for t in TRADES])
    result = run()
    assert (result.samples, result.silent_holes) == (1, 1), result.summary()
    assert result.silent_holes_by_kind == {"wrong_book": 1}
    assert "no 0.5000: stored 5.00 true 3.00" in result.silent_hole_examples[0]
    assert not result.ok


def test_the_same_loss_inside_a_recorded_gap_is_no_silent_hole():
    store_book()
    store_trades([(t, timedelta(0)) for t in TRADES])
    gap(detected=at(2) + RECEIVED, recovered=None)
    result = run()
    assert result.silent_holes == 0, result.summary()
    assert result.samples == 2 and result.samples_in_gap == 1  # the gap's eve is complete and right
    assert result.gaps_by_reason == {"seq_gap": 1} and result.open_gaps == 1
    assert result.ok


def test_a_gap_that_begins_too_late_leaves_a_silent_hole_before_it():
    store_book()
    gap(detected=at(4), recovered=None)  # noticed two seconds after the loss
    assert run().silent_holes == 1


def test_a_gap_closed_by_a_true_snapshot_is_right_after_it_ends():
    store_book()
    final = INITIAL.copy()
    for _, side, price, delta in CHANGES:
        final.apply_delta(side, price, delta)
    yes, no = final.snapshot_levels()
    ingest.snapshots_ingest([(M, at(4), 1, 1, 5, "resync", yes, no, None)])
    gap(detected=at(2) + RECEIVED, recovered=at(4))
    assert run().silent_holes == 0
    # Closed before its re-baseline arrived: the stale book shows as complete.
    SequenceGap.objects.update(recovered_at=at(3.5))
    assert run().silent_holes == 1


def test_trades_missing_duplicated_wrong_and_unexpected_are_counted():
    store_book(lose_second_delta=False)
    stray = TrueTrade("t-x", M, D("0.10"), D("0.90"), D("1"), ms(1))
    # t-1 twice (the second copy stamped a millisecond off), t-2 missing, t-x never made.
    store_trades([(TRADES[0], timedelta(0)), (TRADES[0], timedelta(milliseconds=1)), (stray, timedelta(0))])
    result = run()
    assert (result.trades_missing, result.trades_duplicated, result.trades_unexpected) == (1, 1, 1), result.summary()
    assert not result.ok


def test_a_market_never_recorded_is_counted_unless_a_hole_says_why():
    store_book(lose_second_delta=False)
    store_trades([(t, timedelta(0)) for t in TRADES])
    result = run(truth=truth(N))
    assert (result.markets_existing, result.markets_recorded, result.markets_unrecorded) == (2, 1, 1)
    assert result.silent_holes_by_kind == {"no_snapshot": 1}
    assert result.unrecorded_examples == [N]

    gap(N, detected=at(-10), recovered=None, reason=GapReason.SUBSCRIBE_REFUSED)
    result = run(truth=truth(N))
    assert (result.markets_hole_only, result.markets_unrecorded, result.silent_holes) == (1, 0, 0)
    assert result.ok, result.summary()
