"""The engine is deterministic and its trades are consistent with its books."""

from decimal import Decimal

from simulator import EngineConfig, Exchange
from simulator.events import BookDelta, TradeExecuted
from markets.book import OrderBook

START = 1_795_000_000_000


def run(seed, steps=1500, config=None):
    exchange = Exchange(seed=seed, start_ms=START, config=config or EngineConfig(markets=12))
    events = []
    for i in range(steps):
        events += exchange.step(START + 10 * i)
    return exchange, events


def test_same_seed_same_events_and_another_seed_differs():
    _, first = run(5)
    _, again = run(5)
    _, other = run(6)
    assert first == again
    assert first != other


def test_deltas_replayed_onto_the_initial_books_give_the_final_books():
    initial = Exchange(seed=3, start_ms=START, config=EngineConfig(markets=12))
    books = {t: b.copy() for t, b in initial.books.items()}
    exchange, events = run(3)
    for event in events:
        if isinstance(event, BookDelta):
            books.setdefault(event.market_ticker, OrderBook()).apply_delta(
                event.side, event.price, event.delta
            )

    def nonempty(d):  # a market created during the run may have no order yet
        return {t: b for t, b in d.items() if b.yes or b.no}

    assert nonempty(books) == nonempty(exchange.books)
    assert all(b.negative_levels == 0 for b in books.values())


def test_books_never_cross_and_use_sub_cent_prices_and_fractional_sizes():
    exchange, events = run(4)
    for book in exchange.books.values():
        yes, no = book.best_bid("yes"), book.best_bid("no")
        if yes and no:
            assert yes[0] + no[0] < 1
    deltas = [e for e in events if isinstance(e, BookDelta)]
    assert any(d.price != d.price.quantize(Decimal("0.01")) for d in deltas)
    assert any(d.delta != d.delta.to_integral_value() for d in deltas)


def test_a_taker_consumes_the_opposite_bids_at_the_traded_price():
    """Buying YES at y consumes NO bids at 1 - y (a negative delta of the same size)."""
    _, events = run(8)
    checked = 0
    for before, after in zip(events, events[1:]):
        if isinstance(after, TradeExecuted) and not after.trade.is_block_trade:
            trade = after.trade
            assert isinstance(before, BookDelta) and before.market_ticker == trade.market_ticker
            assert before.delta == -trade.count
            if trade.taker_outcome_side == "yes":
                assert (before.side, before.price) == ("no", 1 - trade.yes_price)
            else:
                assert (before.side, before.price) == ("yes", trade.yes_price)
            assert trade.yes_price + trade.no_price == 1
            checked += 1
    assert checked > 50


def test_lifecycle_creates_determines_and_settles_markets():
    exchange, events = run(9, steps=4000)
    kinds = {type(e).__name__ for e in events}
    assert {"MarketCreated", "EventCreated", "MarketLifecycle"} <= kinds
    settled = [m for m in exchange.markets.values() if m.status == "finalized" and m.settled_ms]
    assert settled and all(m.result in ("yes", "no") and m.settlement_value is not None for m in settled)


def test_whole_units_only_keeps_to_cents_and_contracts():
    exchange, events = run(2, config=EngineConfig(markets=8, whole_units_only=True))
    for d in (e for e in events if isinstance(e, BookDelta)):
        assert d.price == d.price.quantize(Decimal("0.01"))
        assert d.delta == d.delta.to_integral_value()


def test_true_book_at_rebuilds_past_books():
    from simulator import Simulator

    clock = {"now": START}
    sim = Simulator(seed=2, markets=6, rate=0, clock=lambda: clock["now"])
    ticker = next(t for t, m in sim.markets().items() if m.status == "active")
    before = sim.true_book(ticker)
    sim.step(200)
    middle = sim.true_book(ticker)
    clock["now"] += 1000
    sim.step(200)
    assert sim.true_book_at(ticker, START - 1) == before
    assert sim.true_book_at(ticker, START) == middle
    assert sim.true_book_at(ticker, clock["now"]) == sim.true_book(ticker)
