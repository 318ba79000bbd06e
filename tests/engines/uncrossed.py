"""A recorded day whose books never cross, for the engine tests.

Backtesting engines keep one book per instrument (bids and asks); a Kalshi
book whose YES bid meets its implied ask (1 - the NO bid) cannot happen on
the exchange, where such orders would match, and engines treat it
differently (they hide the crossed levels). tests/recorded.py draws prices
at random on both sides, so here both sides bid below 0.50: every YES bid
is below every implied ask. Otherwise the same shape: subscribe snapshots,
deltas (sub-cent prices, fractional sizes, exchange times a little before
the receive times, sometimes none), checkpoints, trades received after their
exchange time, a sequence gap that ends with a resync to a different book,
and a second market on the same subscription.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from markets import ingest
from markets.book import OrderBook
from markets.models import GapReason, Market, SequenceGap

MARKET, OTHER = "KXENG-26NOV-A", "KXENG-26NOV-B"
CHECKPOINT_EVERY = 100


@dataclass
class EngineDay:
    day: date
    instants: list = field(default_factory=list)  # every receive time, in order
    trades: int = 0  # of MARKET
    deltas: int = 0  # of MARKET


def _price(rng) -> Decimal:
    value = Decimal(rng.randint(1, 48)) / 100
    if rng.random() < 0.1:
        value += Decimal("0.005")
    return value.quantize(Decimal("0.0001"))


def _size(rng) -> Decimal:
    return (Decimal(rng.randint(1, 20000)) / 100).quantize(Decimal("0.01"))


def _book(rng) -> OrderBook:
    return OrderBook.from_levels([[_price(rng), _size(rng)] for _ in range(rng.randint(1, 5))],
                                 [[_price(rng), _size(rng)] for _ in range(rng.randint(1, 5))])


def record_engine_day(day: date, *, seed: int = 11, frames: int = 1500) -> EngineDay:
    rng = random.Random(seed)
    now = datetime(day.year, day.month, day.day, 10, tzinfo=timezone.utc)
    Market.objects.bulk_create([Market(ticker=t, event_ticker="KXENG-26NOV",
                                       series_ticker="KXENG") for t in (MARKET, OTHER)],
                               ignore_conflicts=True)
    result = EngineDay(day)
    books = {t: OrderBook() for t in (MARKET, OTHER)}
    counts = {t: 0 for t in (MARKET, OTHER)}
    deltas, snapshots, trades = [], [], []
    state = {"seq": 0}
    session, sid = 5_000_000, 1

    def tick(most=30_000):
        nonlocal now
        now += timedelta(microseconds=rng.randint(1, most))
        result.instants.append(now)
        return now

    def snapshot(ticker, source):
        state["seq"] += 1
        books[ticker] = _book(rng)
        yes, no = books[ticker].snapshot_levels()
        snapshots.append((ticker, tick(), session, sid, state["seq"], source, yes, no, None))

    for ticker in (MARKET, OTHER):
        snapshot(ticker, "subscribe")
    gap_at, gap = frames // 2, {}
    for frame in range(frames):
        if frame == gap_at:
            gap["detected"] = tick()
            gap["expected"] = state["seq"] + 1
            state["seq"] += 2
            gap["received"] = state["seq"]
        if frame == gap_at + 40:
            snapshot(MARKET, "resync")
            gap["recovered"] = snapshots[-1][1]
        ticker = MARKET if rng.random() < 0.85 else OTHER
        at = tick()
        if rng.random() < 0.15:
            yes = _price(rng) + Decimal("0.30")
            trades.append((ticker, at - timedelta(microseconds=rng.randint(0, 200_000)),
                           f"e-{frame:05d}", yes, 1 - yes, _size(rng),
                           rng.choice(("yes", "no")), rng.choice(("bid", "ask")), None,
                           False, at, "ws"))
            result.trades += ticker == MARKET
            continue
        state["seq"] += 1
        if gap_at <= frame < gap_at + 40 and ticker == MARKET:
            continue  # lost in the gap
        side = rng.choice(("yes", "no"))
        levels = getattr(books[ticker], side)
        if levels and rng.random() < 0.45:
            price = rng.choice(sorted(levels))
            change = -levels[price] if rng.random() < 0.5 else -min(levels[price], _size(rng))
        else:
            price, change = _price(rng), _size(rng)
        books[ticker].apply_delta(side, price, change)
        ts = None if rng.random() < 0.05 else at - timedelta(microseconds=rng.randint(0, 40_000))
        deltas.append((ticker, at, session, sid, state["seq"], side, price, change, ts))
        result.deltas += ticker == MARKET
        counts[ticker] += 1
        if counts[ticker] % CHECKPOINT_EVERY == 0:
            yes, no = books[ticker].snapshot_levels()
            snapshots.append((ticker, at, session, sid, state["seq"], "checkpoint", yes, no,
                              None))
    ingest.deltas_ingest(deltas)
    ingest.snapshots_ingest(snapshots)
    ingest.trades_ingest(trades)
    SequenceGap.objects.create(
        market_ticker=MARKET, channel="orderbook_delta", reason=GapReason.SEQ_GAP,
        session_id=session, sid=sid, expected_seq=gap["expected"], received_seq=gap["received"],
        detected_at=gap["detected"], recovered_at=gap["recovered"],
        tickers_on_sid=[MARKET, OTHER])
    return result
