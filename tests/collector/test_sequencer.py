"""Per-(session, sid) sequence numbers: in order, duplicates, gaps."""

from collector.sequencer import Sequencer, Verdict


def verdicts(seqr, session, sid, seqs):
    return [seqr.check(session, sid, s).verdict for s in seqs]


def test_in_order_from_the_first_seen_seq():
    seqr = Sequencer()
    assert verdicts(seqr, 1, 7, [40, 41, 42]) == [Verdict.IN_ORDER] * 3


def test_a_confirmed_subscription_must_start_at_one():
    seqr = Sequencer()
    seqr.subscribed(1, 7, "orderbook_delta")
    outcome = seqr.check(1, 7, 3)
    assert outcome.verdict is Verdict.GAP and (outcome.expected, outcome.received) == (1, 3)


def test_duplicates_and_stale_frames_are_dropped():
    seqr = Sequencer()
    assert verdicts(seqr, 1, 2, [1, 2, 2, 1, 3]) == [
        Verdict.IN_ORDER, Verdict.IN_ORDER, Verdict.DUPLICATE, Verdict.DUPLICATE, Verdict.IN_ORDER]


def test_a_gap_is_reported_once_and_the_counter_moves_on():
    seqr = Sequencer()
    seqr.check(1, 2, 1)
    gap = seqr.check(1, 2, 5)
    assert gap.verdict is Verdict.GAP and (gap.expected, gap.received) == (2, 5)
    assert verdicts(seqr, 1, 2, [6, 3]) == [Verdict.IN_ORDER, Verdict.DUPLICATE]


def test_the_counter_belongs_to_the_sid_not_the_ticker():
    # Interleaved tickers A and B on one sid share one counter: no false gap.
    seqr = Sequencer()
    state = seqr.subscribed(1, 2, "orderbook_delta")
    state.tickers |= {"A", "B"}
    assert verdicts(seqr, 1, 2, [1, 2, 3, 4]) == [Verdict.IN_ORDER] * 4


def test_sessions_and_sids_are_independent():
    seqr = Sequencer()
    seqr.check(1, 2, 10)
    assert seqr.check(1, 3, 1).verdict is Verdict.IN_ORDER
    assert seqr.check(2, 2, 1).verdict is Verdict.IN_ORDER  # a reconnect: new counters
    assert seqr.check(1, 2, 11).verdict is Verdict.IN_ORDER


def test_resubscribing_an_open_sid_keeps_its_counter():
    seqr = Sequencer()
    seqr.subscribed(1, 2, "orderbook_delta")
    seqr.check(1, 2, 1)
    seqr.subscribed(1, 2, "orderbook_delta")  # merged subscribe, same sid
    assert seqr.check(1, 2, 2).verdict is Verdict.IN_ORDER


def test_forgetting_a_session_drops_its_sids():
    seqr = Sequencer()
    seqr.subscribed(1, 2, "orderbook_delta")
    seqr.subscribed(1, 3, "trade")
    seqr.subscribed(2, 2, "trade")
    gone = seqr.forget_session(1)
    assert sorted(sid for sid, _ in gone) == [2, 3]
    assert seqr.get(1, 2) is None and seqr.get(2, 2) is not None
