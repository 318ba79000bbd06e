"""Load a realistic recorded day into the database, fast, for benchmarks.

One hot market (by default 1,000,000 order-book deltas and 200,000 trades)
and a thousand quiet markets, with what the collector would have written
around them: a subscribe snapshot per market when the day's session starts,
a checkpoint snapshot every `checkpoint_every` deltas per market, a sequence
gap on the hot market (resynced with get_snapshot) and a disconnect of the
whole connection (new session, new sids, fresh subscribe snapshots, a gap
row per ticker and one channel-wide trade gap). The series/event/market
hierarchy and some settlements come with it.

The books are simulated exactly (integer ticks), so every checkpoint is the
true book at its key and no level ever goes negative. Rows are COPYed
straight into the partitioned tables (about twice as fast as the
idempotent staging load of markets.ingest); the generator first deletes its
own earlier rows for the same tickers and day, so it can be re-run.

    python bench/generate_day.py --day 2026-11-23
    from bench.generate_day import generate_day; day = generate_day()
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.django_env import setup_django  # noqa: E402  (the root is on sys.path now)

UTC = timezone.utc
US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
TICK = 100  # one cent in price units of 1/10000 dollar
HOT_SID, QUIET_SID = 1, 2  # Kalshi numbers subscriptions per connection

DEFAULT_HOT_DELTAS = 1_000_000
DEFAULT_HOT_TRADES = 200_000
DEFAULT_QUIET_MARKETS = 1000
DEFAULT_CHECKPOINT_EVERY = 500  # as the collector writes them
DEFAULT_PREFIX = "BENCH"

# When, in seconds after midnight, the day's incidents happen.
SEQ_GAP_AT, SEQ_GAP_SECONDS = 9 * 3600, 2.0
DISCONNECT_AT, DISCONNECT_SECONDS = 15 * 3600, 3.0


@dataclass
class GeneratedDay:
    """What was loaded: enough for a benchmark to pick its queries."""

    day: date
    start: datetime
    end: datetime
    hot_ticker: str
    quiet_tickers: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    gaps: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    seconds: float = 0.0


# --- Simulation ---------------------------------------------------------------


def price_str(units: int) -> str:
    return f"{units // 10000}.{units % 10000:04d}"


def count_str(hundredths: int) -> str:
    sign = "-" if hundredths < 0 else ""
    hundredths = abs(hundredths)
    return f"{sign}{hundredths // 100}.{hundredths % 100:02d}"


class BookSim:
    """A bids-only book on both sides in integer ticks, kept uncrossed around a mid.

    `yes` bids stay below the mid and `no` bids below 1 - mid, so the implied
    yes ask (1 - best no bid) is always above the best yes bid.
    """

    def __init__(self, rng: random.Random, mid_cents: int):
        self.rng = rng
        self.yes: dict[int, int] = {}
        self.no: dict[int, int] = {}
        self.mid = mid_cents
        for cents in range(max(1, mid_cents - 10), mid_cents):
            self.yes[cents * TICK] = rng.randint(1, 300) * 100
        for cents in range(max(1, 100 - mid_cents - 10), 100 - mid_cents):
            self.no[cents * TICK] = rng.randint(1, 300) * 100

    def levels(self, side: str) -> list[list[str]]:
        levels = self.yes if side == "yes" else self.no
        return [[price_str(p), count_str(s)] for p, s in sorted(levels.items())]

    def move_mid(self, mid_cents: int) -> list[tuple[str, int, int]]:
        """Set a new mid; the deltas (not yet applied) that cancel crossing levels."""
        self.mid = mid_cents
        removals = []
        for side, limit in (
            ("yes", mid_cents * TICK),
            ("no", (100 - mid_cents) * TICK),
        ):
            levels = self.yes if side == "yes" else self.no
            removals.extend((side, p, -s) for p, s in levels.items() if p >= limit)
        return removals

    def apply(self, side: str, price: int, delta: int) -> None:
        levels = self.yes if side == "yes" else self.no
        size = levels.get(price, 0) + delta
        if size > 0:
            levels[price] = size
        else:
            levels.pop(price, None)

    def step(self) -> tuple[str, int, int]:
        """One random change near the top of one side, applied: (side, price, delta)."""
        rng = self.rng
        side = "yes" if rng.random() < 0.5 else "no"
        levels = self.yes if side == "yes" else self.no
        top = (self.mid if side == "yes" else 100 - self.mid) - 1
        if levels and rng.random() < 0.45:
            near = sorted(levels, reverse=True)[: 1 + int(rng.expovariate(0.4))]
            price = near[-1]
            size = levels[price]
            delta = (
                -size
                if rng.random() < 0.4
                else -min(size, rng.randint(1, max(1, size // 100)) * 100)
            )
        else:
            price = max(1, top - int(rng.expovariate(0.35))) * TICK
            # Mostly whole contracts; fractional ones exist since 2026.
            delta = rng.randint(1, 500) * 100 + rng.choice((0, 0, 0, 50, 25))
        self.apply(side, price, delta)
        return side, price, delta


def mid_path(rng: random.Random, minutes: int = 1440) -> list[int]:
    """The hot market's mid (cents) per minute: a bounded random walk."""
    mids, mid = [], 50
    for _ in range(minutes + 1):
        mids.append(mid)
        if rng.random() < 0.3:
            mid = min(95, max(5, mid + rng.choice((-1, 1))))
    return mids


def spread_times(
    rng: random.Random, n: int, windows: list[tuple[int, int]]
) -> list[int]:
    """n strictly increasing microsecond offsets, uniform over the windows."""
    total = sum(b - a for a, b in windows)
    offsets = sorted(rng.randrange(total) for _ in range(n))
    times, prev, w, base = [], -1, 0, 0
    for off in offsets:
        while off - base >= windows[w][1] - windows[w][0]:
            base += windows[w][1] - windows[w][0]
            w += 1
        t = windows[w][0] + off - base
        t = max(t, prev + 1)
        times.append(t)
        prev = t
    return times


# --- Loading ------------------------------------------------------------------


def generate_day(
    *,
    day: date | None = None,
    hot_deltas: int = DEFAULT_HOT_DELTAS,
    hot_trades: int = DEFAULT_HOT_TRADES,
    quiet_markets: int = DEFAULT_QUIET_MARKETS,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    seed: int = 1,
    prefix: str = DEFAULT_PREFIX,
    log=print,
) -> GeneratedDay:
    """Generate and load one day; returns what was loaded. Re-running replaces it."""
    from django.db import connection, transaction

    from markets import ingest
    from markets.candles import rebuild_bars
    from markets.record import compact
    from markets.record.schema import DELTAS, SNAPSHOTS, TRADES
    from markets.models import (
        Event,
        GapReason,
        Market,
        SequenceGap,
        Series,
        Settlement,
    )
    from markets.partitioning import ensure_partitions

    started = time.perf_counter()
    day = day or (datetime.now(UTC).date() - timedelta(days=1))
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rng = random.Random(seed)

    def at(us: int) -> datetime:
        return midnight + timedelta(microseconds=us)

    hot = f"{prefix}-HOT"
    quiet = [f"{prefix}-Q{i:04d}" for i in range(quiet_markets)]
    tickers = [hot, *quiet]

    session_a = int(midnight.timestamp() * US_PER_SECOND) + 500_000
    subscribe_a = 1 * US_PER_SECOND
    gap_start = SEQ_GAP_AT * US_PER_SECOND
    gap_end = gap_start + int(SEQ_GAP_SECONDS * US_PER_SECOND)
    cut = DISCONNECT_AT * US_PER_SECOND
    session_b_us = cut + int(DISCONNECT_SECONDS * US_PER_SECOND) - 500_000
    session_b = int(midnight.timestamp() * US_PER_SECOND) + session_b_us
    subscribe_b = cut + int(DISCONNECT_SECONDS * US_PER_SECOND)
    end_us = US_PER_DAY - 1

    deltas: list[tuple] = []
    snapshots: list[tuple] = []
    trades: list[tuple] = []
    gaps: list[SequenceGap] = []

    def snapshot(ticker, us, session_id, sid, seq_, source, sim):
        levels = (json.dumps(sim.levels("yes")), json.dumps(sim.levels("no")))
        snapshots.append((ticker, at(us), session_id, sid, seq_, source, *levels, None))

    def delta_row(ticker, us, session_id, sid, seq_, change):
        side, price, delta = change
        return (
            ticker,
            at(us),
            session_id,
            sid,
            seq_,
            side,
            price_str(price),
            count_str(delta),
            at(us - 40_000),
        )

    # --- the hot market: its own subscription (sid 1) --------------------------
    log(f"simulating {hot_deltas:,} deltas and {hot_trades:,} trades of {hot}")
    mids = mid_path(rng)
    book = BookSim(rng, mids[0])
    windows = [
        (subscribe_a + 1, gap_start),
        (gap_end + 1, cut),
        (subscribe_b + 1, end_us),
    ]
    seq, session, since_snapshot = 1, session_a, 0
    snapshot(hot, subscribe_a, session, HOT_SID, seq, "subscribe", book)
    resynced = reconnected = False
    pending: list[tuple[str, int, int]] = []  # cancels owed after a mid move
    for us in spread_times(rng, hot_deltas, windows):
        if not resynced and us > gap_end:
            # Kalshi skipped 7 seqs; the collector recorded the gap and asked
            # for a snapshot, which arrived at gap_end. The book moved on.
            pending.clear()
            for _ in range(25):
                book.step()
            gaps.append(
                SequenceGap(
                    market_ticker=hot,
                    reason=GapReason.SEQ_GAP,
                    session_id=session,
                    sid=HOT_SID,
                    expected_seq=seq + 1,
                    received_seq=seq + 8,
                    detected_at=at(gap_start),
                    recovered_at=at(gap_end),
                    tickers_on_sid=[hot],
                )
            )
            seq += 9
            snapshot(hot, gap_end, session, HOT_SID, seq, "resync", book)
            since_snapshot, resynced = 0, True
        if not reconnected and us > subscribe_b:
            pending.clear()
            for _ in range(40):
                book.step()
            session, seq = session_b, 1
            snapshot(hot, subscribe_b, session, HOT_SID, seq, "subscribe", book)
            since_snapshot, reconnected = 0, True
        if not pending:
            mid = mids[us // (60 * US_PER_SECOND)]
            if mid != book.mid:
                pending = book.move_mid(mid)
        if pending:
            change = pending.pop(0)
            book.apply(*change)
        else:
            change = book.step()
        seq += 1
        deltas.append(delta_row(hot, us, session, HOT_SID, seq, change))
        since_snapshot += 1
        if since_snapshot >= checkpoint_every and not pending:
            snapshot(hot, us, session, HOT_SID, seq, "checkpoint", book)
            since_snapshot = 0

    if not reconnected:  # so few deltas that none came after the disconnect
        snapshot(hot, subscribe_b, session_b, HOT_SID, 1, "subscribe", book)

    trade_windows = [(subscribe_a, cut), (subscribe_b, end_us)]
    for us in spread_times(rng, hot_trades, trade_windows):
        mid = mids[us // (60 * US_PER_SECOND)]
        taker_yes = rng.random() < 0.5
        yes_price = (mid + (1 if taker_yes else -1) * rng.choice((0, 1, 1, 2))) * TICK
        yes_price = min(99 * TICK, max(TICK, yes_price))
        count = rng.randint(1, 100) * 100 + rng.choice((0, 0, 0, 0, 50))
        trades.append(_trade_row(hot, at(us), rng, yes_price, count, taker_yes))

    # --- the quiet markets: one shared subscription (sid 2) ----------------------
    log(f"simulating {quiet_markets:,} quiet markets")
    sims = {ticker: BookSim(rng, rng.randint(10, 90)) for ticker in quiet}
    events = []  # (received_us, ticker): every quiet delta, in arrival order
    delta_windows = [
        (subscribe_a + US_PER_SECOND, cut),
        (subscribe_b + US_PER_SECOND, end_us),
    ]
    for ticker, sim in sims.items():
        events.extend(
            (us, ticker)
            for us in spread_times(rng, rng.randint(20, 200), delta_windows)
        )
        for us in spread_times(rng, rng.randint(0, 40), trade_windows):
            count = rng.randint(1, 20) * 100
            trades.append(
                _trade_row(
                    ticker, at(us), rng, sim.mid * TICK, count, rng.random() < 0.5
                )
            )
    events.sort()

    def subscribe_quiet(session_id: int, sub_us: int) -> None:
        # One snapshot frame per ticker, each taking a seq on the sid.
        for n, ticker in enumerate(quiet):
            sequence[session_id] += 1
            snapshot(
                ticker,
                sub_us + 100 * (n + 1),
                session_id,
                QUIET_SID,
                sequence[session_id],
                "subscribe",
                sims[ticker],
            )
            since[ticker] = 0

    sequence = {session_a: 0, session_b: 0}
    since = dict.fromkeys(quiet, 0)
    subscribe_quiet(session_a, subscribe_a)
    in_b = False
    for us, ticker in events:
        if not in_b and us > cut:
            for sim in sims.values():
                sim.step()  # the books moved while the connection was down
            subscribe_quiet(session_b, subscribe_b)
            in_b = True
        session_id = session_b if in_b else session_a
        sequence[session_id] += 1
        sim = sims[ticker]
        deltas.append(
            delta_row(
                ticker, us, session_id, QUIET_SID, sequence[session_id], sim.step()
            )
        )
        since[ticker] += 1
        if since[ticker] >= checkpoint_every:
            snapshot(
                ticker,
                us,
                session_id,
                QUIET_SID,
                sequence[session_id],
                "checkpoint",
                sim,
            )
            since[ticker] = 0
    if not in_b:
        subscribe_quiet(session_b, subscribe_b)

    # The disconnect is a gap for every ticker of both subscriptions, and
    # one for the whole trade channel.
    for n, ticker in enumerate(tickers):
        gaps.append(
            SequenceGap(
                market_ticker=ticker,
                reason=GapReason.DISCONNECT,
                session_id=session_a,
                sid=HOT_SID if n == 0 else QUIET_SID,
                detected_at=at(cut),
                recovered_at=at(subscribe_b + 100 * n),
            )
        )
    gaps.append(
        SequenceGap(
            market_ticker="",
            channel="trade",
            reason=GapReason.DISCONNECT,
            session_id=session_a,
            detected_at=at(cut),
            recovered_at=at(subscribe_b),
        )
    )

    # --- the hierarchy ---------------------------------------------------------
    series = [
        Series(
            ticker=f"{prefix}S{k}",
            title=f"Bench series {k}",
            category="Bench",
            frequency="daily",
        )
        for k in range(10)
    ]
    event_of = {hot: f"{prefix}E-HOT"}
    event_of.update({t: f"{prefix}E-{n // 10:03d}" for n, t in enumerate(quiet)})
    events_rows = {
        e: Event(
            event_ticker=e,
            series_ticker=f"{prefix}S{k % 10}",
            title=f"Bench event {e}",
            category="Bench",
            status="open",
            mutually_exclusive=True,
        )
        for k, e in enumerate(dict.fromkeys(event_of.values()))
    }
    settled = set(quiet[: quiet_markets // 10])
    markets = [
        Market(
            ticker=t,
            event_ticker=event_of[t],
            series_ticker=events_rows[event_of[t]].series_ticker,
            title=f"Bench market {t}",
            status="finalized" if t in settled else "active",
            open_time=midnight - timedelta(days=1),
            close_time=midnight + timedelta(days=1),
            result=("yes" if n % 2 else "no") if t in settled else "",
        )
        for n, t in enumerate(tickers)
    ]
    settlements = [
        Settlement(
            market_ticker=m.ticker,
            event_ticker=m.event_ticker,
            result=m.result,
            settlement_value=1 if m.result == "yes" else 0,
            determined_at=midnight + timedelta(hours=20),
            settled_at=midnight + timedelta(hours=21),
            source="historical",
        )
        for m in markets
        if m.ticker in settled
    ]

    # --- load ------------------------------------------------------------------
    log(
        f"loading {len(deltas):,} deltas, {len(trades):,} trades, {len(snapshots):,} snapshots"
    )
    next_day = midnight + timedelta(days=1)
    for record in (DELTAS, SNAPSHOTS, TRADES):
        ensure_partitions(record.stored_model, [day])
    with transaction.atomic(), connection.cursor() as cursor:
        for record in (DELTAS, SNAPSHOTS, TRADES):
            column = record.day_column
            cursor.execute(
                compact.delete_sql(record, f"t.market_ticker = ANY(%(tickers)s) "
                                   f"AND t.{column} >= %(start)s AND t.{column} < %(end)s",
                                   within=("%(start)s", "%(end)s")),
                {"tickers": tickers, "start": midnight, "end": next_day},
            )
        SequenceGap.objects.filter(
            market_ticker__in=tickers,
            detected_at__gte=midnight,
            detected_at__lt=next_day,
        ).delete()
        SequenceGap.objects.filter(market_ticker="", session_id=session_a).delete()
        Settlement.objects.filter(market_ticker__in=tickers).delete()
        Market.objects.filter(ticker__in=tickers).delete()
        Event.objects.filter(event_ticker__in=list(events_rows)).delete()
        Series.objects.filter(ticker__in=[s.ticker for s in series]).delete()
        Series.objects.bulk_create(series)
        Event.objects.bulk_create(events_rows.values())
        Market.objects.bulk_create(markets)
        Settlement.objects.bulk_create(settlements)
        SequenceGap.objects.bulk_create(gaps)
        raw = cursor.cursor
        ingest.deltas_ingest(deltas)  # text values: converted to compact rows in SQL
        for record, rows in ((SNAPSHOTS, snapshots), (TRADES, trades)):
            with raw.copy(f"COPY {record.stored_table} ({', '.join(record.columns)}) "
                          "FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        # A plain COPY skips ingest, which keeps the candle bars: rebuild the day's.
        rebuild_bars(midnight, next_day)
    with connection.cursor() as cursor:
        for table in (
            DELTAS.stored_table,
            "record_markets",
            "orderbook_snapshots",
            "trades",
            "sequence_gaps",
        ):
            cursor.execute(f"ANALYZE {table}")

    result = GeneratedDay(
        day=day,
        start=midnight,
        end=next_day,
        hot_ticker=hot,
        quiet_tickers=quiet,
        counts={
            "deltas": len(deltas),
            "trades": len(trades),
            "snapshots": len(snapshots),
            "hot_deltas": hot_deltas,
            "hot_trades": hot_trades,
            "gaps": len(gaps),
        },
        gaps=[
            (g.market_ticker, g.detected_at, g.recovered_at)
            for g in gaps
            if g.market_ticker == hot
        ],
        seconds=time.perf_counter() - started,
    )
    log(f"loaded {day} in {result.seconds:.1f} s: {result.counts}")
    return result


def _trade_row(ticker, ts, rng, yes_price, count, taker_yes):
    side = "yes" if taker_yes else "no"
    return (
        ticker,
        ts,
        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        price_str(yes_price),
        price_str(10000 - yes_price),
        count_str(count),
        side,
        "bid" if taker_yes else "ask",
        side,
        False,
        ts + timedelta(milliseconds=30),
        "ws",
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--day", type=date.fromisoformat, help="UTC day (default: yesterday)."
    )
    parser.add_argument("--hot-deltas", type=int, default=DEFAULT_HOT_DELTAS)
    parser.add_argument("--hot-trades", type=int, default=DEFAULT_HOT_TRADES)
    parser.add_argument("--quiet-markets", type=int, default=DEFAULT_QUIET_MARKETS)
    parser.add_argument(
        "--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="Ticker prefix of generated rows."
    )
    args = parser.parse_args(argv)
    setup_django()
    generate_day(
        day=args.day,
        hot_deltas=args.hot_deltas,
        hot_trades=args.hot_trades,
        quiet_markets=args.quiet_markets,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        prefix=args.prefix,
    )


if __name__ == "__main__":
    main()
