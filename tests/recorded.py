"""A synthetic record, as the collector would write it, for the bulk-data tests.

Two sessions, several markets on one subscription (so `seq` is shared between
tickers), Kalshi's subscribe snapshots, the collector's checkpoints (sharing
the key of the last delta they include), trades received a little after
their exchange time, lifecycle messages (one event-wide), a sequence gap on
the hot market that ends with a resync snapshot whose book differs from the
one before the gap, and a disconnect gap between the sessions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from markets import ingest
from markets.book import OrderBook
from markets.models import GapReason, LifecycleEvent, Market, SequenceGap

HOT, QUIET, OTHER = "KXTEST-26NOV-HOT", "KXTEST-26NOV-QUIET", "KXOTHER-26NOV-X"
EVENT = "KXTEST-26NOV"
CHECKPOINT_EVERY = 150


@dataclass
class Record:
    day: date
    first: datetime  # received_at of the first stored row (trades may be stamped earlier)
    last: datetime  # received_at of the last stored row
    gap: SequenceGap  # the seq gap on HOT
    disconnect: datetime  # when session 1 ended
    deltas: int = 0
    trades: int = 0
    snapshots: int = 0
    tickers: tuple = (HOT, QUIET, OTHER)
    instants: list = field(default_factory=list)  # every received_at, in order


class _Clock:
    """The collector's strictly increasing receive time."""

    def __init__(self, start: datetime, rng: random.Random):
        self.now, self.rng = start, rng

    def tick(self, max_us: int = 40_000) -> datetime:
        self.now += timedelta(microseconds=self.rng.randint(1, max_us))
        return self.now


def _price(rng) -> Decimal:
    cents = Decimal(rng.randint(1, 99)) / 100
    if rng.random() < 0.1:  # sub-cent ticks exist
        cents += Decimal(rng.choice((1, 5))) / 1000
    return cents.quantize(Decimal("0.0001"))


def _size(rng) -> Decimal:
    return (Decimal(rng.randint(1, 50000)) / 100).quantize(Decimal("0.01"))


def record_day(day: date, *, seed: int = 7, frames: int = 2400,
               start: datetime | None = None, millis_before: datetime | None = None) -> Record:
    """Write one synthetic day starting at 01:00 UTC of `day` (or at `start`); return what it holds.

    The record lasts about a minute: a `start` just before midnight spreads
    it over two UTC days. Exchange times (`ts`) have microseconds, as the
    RFC 3339 `ts` of older frames may; those before `millis_before` are
    whole milliseconds, as Kalshi's `ts_ms` are.
    """

    def exchange_time(at: datetime) -> datetime:
        if millis_before is not None and at < millis_before:
            return at.replace(microsecond=at.microsecond // 1000 * 1000)
        return at

    rng = random.Random(seed)
    start = start or datetime(day.year, day.month, day.day, 1, tzinfo=timezone.utc)
    clock = _Clock(start, rng)
    Market.objects.bulk_create(
        [
            Market(ticker=HOT, event_ticker=EVENT, series_ticker="KXTEST"),
            Market(ticker=QUIET, event_ticker=EVENT, series_ticker="KXTEST"),
            Market(ticker=OTHER, event_ticker="KXOTHER-26NOV", series_ticker="KXOTHER"),
        ],
        ignore_conflicts=True,
    )
    tickers = (HOT, QUIET, OTHER)
    books = {t: OrderBook() for t in tickers}
    since_checkpoint = {t: 0 for t in tickers}
    deltas, snapshots, trades, lifecycle = [], [], [], []
    instants = []
    state = {"session": 1_000_000, "sid": 1, "seq": 0}
    gap_info = {}

    def subscribe_snapshots(source="subscribe", only=tickers):
        for ticker in only:
            state["seq"] += 1
            at = clock.tick()
            instants.append(at)
            book = OrderBook.from_levels(
                [[_price(rng), _size(rng)] for _ in range(rng.randint(0, 6))],
                [[_price(rng), _size(rng)] for _ in range(rng.randint(1, 6))],
            )
            books[ticker] = book
            yes, no = book.snapshot_levels()
            snapshots.append((ticker, at, state["session"], state["sid"], state["seq"],
                              source, yes, no, None))

    subscribe_snapshots()
    gap_frame, disconnect_frame = frames // 3, (2 * frames) // 3
    disconnect_at = None
    in_gap = False
    for frame in range(frames):
        if frame == gap_frame:
            # seq jumps on the shared sid: the collector records the gap for
            # HOT and drops its deltas until the resync snapshot.
            gap_info["detected"] = clock.tick()
            instants.append(gap_info["detected"])
            gap_info["expected"] = state["seq"] + 1
            state["seq"] += 3
            gap_info["received"] = state["seq"]
            in_gap = True
        if in_gap and frame == gap_frame + 60:
            subscribe_snapshots("resync", only=(HOT,))
            gap_info["recovered"] = snapshots[-1][1]
            in_gap = False
        if frame == disconnect_frame:
            disconnect_at = clock.tick(2_000_000)
            instants.append(disconnect_at)
            state.update(session=2_000_000, sid=1, seq=0)  # a new connection: seq restarts
            clock.tick(3_000_000)
            subscribe_snapshots()
        ticker = rng.choices(tickers, weights=(8, 1, 1))[0]
        kind = rng.random()
        at = clock.tick()
        instants.append(at)
        if kind < 0.15:
            ts = exchange_time(at - timedelta(microseconds=rng.randint(0, 300_000)))
            yes = _price(rng)
            trades.append((ticker, ts, f"t-{frame:06d}", yes, Decimal(1) - yes, _size(rng),
                           rng.choice(("yes", "no")), rng.choice(("bid", "ask")), None,
                           False, at, "ws"))
            continue
        if kind < 0.17:
            lifecycle.append(LifecycleEvent(
                market_ticker=ticker, event_ticker=EVENT, event_type="metadata_updated",
                received_at=at, ts=at, session_id=state["session"], sid=9, seq=frame,
                payload={"market_ticker": ticker, "yes_sub_title": f"a \"quoted\"\ntitle {frame}"},
            ))
            continue
        state["seq"] += 1
        if in_gap and ticker == HOT:
            continue  # lost: this is what a gap means
        side = rng.choice(("yes", "no"))
        levels = books[ticker].yes if side == "yes" else books[ticker].no
        if levels and rng.random() < 0.45:
            price = rng.choice(sorted(levels))
            change = -min(levels[price], _size(rng))
        else:
            price, change = _price(rng), _size(rng)
        books[ticker].apply_delta(side, price, change)
        deltas.append((ticker, at, state["session"], state["sid"], state["seq"], side, price,
                       change, exchange_time(at - timedelta(milliseconds=rng.randint(0, 40)))))
        since_checkpoint[ticker] += 1
        if since_checkpoint[ticker] >= CHECKPOINT_EVERY:
            since_checkpoint[ticker] = 0
            yes, no = books[ticker].snapshot_levels()
            snapshots.append((ticker, at, state["session"], state["sid"], state["seq"],
                              "checkpoint", yes, no, None))
    lifecycle.append(LifecycleEvent(
        market_ticker="", event_ticker=EVENT, event_type="event_lifecycle",
        received_at=clock.tick(), session_id=state["session"], sid=9, seq=frames + 1,
        payload={"event_ticker": EVENT},
    ))
    instants.append(clock.now)

    ingest.deltas_ingest(deltas)
    ingest.snapshots_ingest(snapshots)
    ingest.trades_ingest(trades)
    LifecycleEvent.objects.bulk_create(lifecycle)
    gap = SequenceGap.objects.create(
        market_ticker=HOT, channel="orderbook_delta", reason=GapReason.SEQ_GAP,
        session_id=1_000_000, sid=1, expected_seq=gap_info["expected"],
        received_seq=gap_info["received"], detected_at=gap_info["detected"],
        recovered_at=gap_info["recovered"], tickers_on_sid=list(tickers),
    )
    for ticker in tickers:
        SequenceGap.objects.create(
            market_ticker=ticker, channel="orderbook_delta", reason=GapReason.DISCONNECT,
            session_id=1_000_000, sid=1, detected_at=disconnect_at,
            # recovered by the new session's subscribe snapshot
            recovered_at=next(s[1] for s in snapshots if s[2] == 2_000_000 and s[0] == ticker),
        )
    return Record(
        day=day, first=instants[0], last=clock.now, gap=gap, disconnect=disconnect_at,
        deltas=len(deltas), trades=len(trades), snapshots=len(snapshots), instants=instants,
    )
