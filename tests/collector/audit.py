"""The audit: what the database holds, judged against the exchange's truth.

The collector's promise is not "no holes" (a real exchange makes holes) but
"no SILENT holes": wherever the stored record cannot rebuild the true book,
it must say so with a recorded gap. The audit checks exactly that:

  * books: for every market that existed during the window, at sampled
    instants (random ones, plus the instant right before each of its recorded
    gaps begins and right after each ends, plus the end of the window),
    `markets.replay.book_at` either equals the true book or says the instant
    lies inside a recorded gap. Anything else is a SILENT HOLE: the API would
    serve a wrong book as complete (or no book, with no gap saying why).
  * trades: every true trade of the window is stored exactly once, as it was
    made (missing, duplicated, wrong and unexpected are counted apart).
  * markets: every market that existed during the window has a recorded book
    (a snapshot), or at least a recorded hole saying why not.

Clocks: stored rows carry the collector's receive time; the truth carries
the exchange's time. A frame is received a little after it happens, so a
stored book at instant R is accepted if it equals the true book at some
moment of [R - lag, R]. The lag only delays judgement: a lost delta leaves
the stored book wrong at every later instant until a re-baseline, so it is
still caught (a wrong stretch shorter than the lag is not).

The truth comes from a `Truth`: `Truth.from_simulator(sim)` for a real run
(the simulator must record its events), or one built by hand in a unit test.
`audit()` reads the database synchronously; call it from async code through
`collector.db.run_db`.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable, Iterator

from django.db.models import Min

from markets.book import OrderBook
from markets.models import OrderbookSnapshot, SequenceGap, SnapshotSource, Trade
from markets.replay import book_at

BOOK_CHANNEL = "orderbook_delta"
ONE_MICROSECOND = timedelta(microseconds=1)
ONE_MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EXAMPLES = 5  # examples kept of each kind of failure


# -- the truth -------------------------------------------------------------------


@dataclass(frozen=True)
class TrueMarket:
    ticker: str
    created_ms: int
    close_ms: int  # when it stopped trading (or will): after that its book is frozen
    combo: bool = False  # a multivariate market: recorded only when asked for


@dataclass(frozen=True)
class TrueTrade:
    trade_id: str
    market_ticker: str
    yes_price: Decimal
    no_price: Decimal
    count: Decimal
    ts_ms: int


@dataclass
class Truth:
    """What really happened: markets, every book change, every trade."""

    markets: dict[str, TrueMarket]
    initial_books: dict[str, OrderBook]  # each market's book before the first change
    changes: dict[str, list[tuple[int, str, Decimal, Decimal]]]  # ticker -> [(ts_ms, side, price, delta)]
    trades: list[TrueTrade]

    @classmethod
    def from_simulator(cls, sim) -> "Truth":
        """The simulator's truth so far (it must have been built with record_events=True)."""
        from simulator.events import BookDelta

        if sim.history is None:
            raise RuntimeError("the audit needs Simulator(record_events=True)")
        changes: dict[str, list] = defaultdict(list)
        for event in list(sim.history):
            if isinstance(event, BookDelta):
                changes[event.market_ticker].append((event.ts_ms, event.side, event.price, event.delta))
        markets = {
            ticker: TrueMarket(
                ticker, m.created_ms, m.close_ms, combo=bool(getattr(m, "mve_collection_ticker", None))
            )
            for ticker, m in sim.markets().items()
        }
        trades = [
            TrueTrade(t.trade_id, t.market_ticker, t.yes_price, t.no_price, t.count, t.ts_ms)
            for t in sim.trades()
        ]
        initial = {t: b.copy() for t, b in sim._initial_books.items()}
        return cls(markets, initial, dict(changes), trades)

    def books_between(self, ticker: str, instants_ms: list[int], lag_ms: int) -> Iterator[list[OrderBook]]:
        """For each instant R (ascending), every true book of [R - lag, R]."""
        changes = self.changes.get(ticker, [])
        book = self.initial_books.get(ticker, OrderBook()).copy()
        applied = 0
        for at in instants_ms:
            while applied < len(changes) and changes[applied][0] <= at - lag_ms:
                _, side, price, delta = changes[applied]
                book.apply_delta(side, price, delta)
                applied += 1
            books, moving = [book.copy()], book.copy()
            for ts, side, price, delta in changes[applied:]:
                if ts > at:
                    break
                moving.apply_delta(side, price, delta)
                books.append(moving.copy())
            yield books


# -- the verdict -----------------------------------------------------------------


@dataclass
class AuditResult:
    start: datetime
    end: datetime
    markets_audited: int = 0
    samples: int = 0
    samples_in_gap: int = 0  # instants the record honestly declares incomplete
    silent_holes: int = 0  # instants where the record is wrong (or empty) and says nothing
    silent_hole_markets: set = field(default_factory=set)
    silent_holes_by_kind: Counter = field(default_factory=Counter)  # wrong_book, no_snapshot
    silent_hole_examples: list = field(default_factory=list)
    trades_expected: int = 0
    trades_stored: int = 0  # rows
    trades_missing: int = 0
    trades_duplicated: int = 0  # rows beyond the first for one trade_id
    trades_wrong: int = 0  # stored with other values than the exchange's
    trades_unexpected: int = 0  # stored, but the exchange never made them
    trade_examples: list = field(default_factory=list)
    markets_existing: int = 0
    markets_recorded: int = 0  # with at least one replayable snapshot
    markets_hole_only: int = 0  # no snapshot, but a recorded hole says why
    markets_unrecorded: int = 0  # neither: lost without a word
    unrecorded_examples: list = field(default_factory=list)
    gaps_by_reason: Counter = field(default_factory=Counter)  # book gaps of the window
    open_gaps: int = 0  # book gaps of the window still open at its end

    @property
    def ok(self) -> bool:
        return not (self.silent_holes or self.trades_missing or self.trades_duplicated
                    or self.trades_wrong or self.trades_unexpected or self.markets_unrecorded)

    def summary(self) -> str:
        lines = [
            f"audit {self.start.isoformat()} .. {self.end.isoformat()}: {'OK' if self.ok else 'FAILED'}",
            f"  books: {self.markets_audited} markets, {self.samples} instants, "
            f"{self.samples_in_gap} inside a recorded gap, SILENT HOLES {self.silent_holes} "
            f"in {len(self.silent_hole_markets)} markets {dict(self.silent_holes_by_kind)}",
            f"  trades: {self.trades_expected} true, {self.trades_stored} rows, missing {self.trades_missing}, "
            f"duplicated {self.trades_duplicated}, wrong {self.trades_wrong}, unexpected {self.trades_unexpected}",
            f"  markets: {self.markets_existing} existed, {self.markets_recorded} recorded, "
            f"{self.markets_hole_only} only a recorded hole, UNRECORDED {self.markets_unrecorded}",
            f"  book gaps by reason: {dict(sorted(self.gaps_by_reason.items()))} (open at the end: {self.open_gaps})",
        ]
        for title, examples in (("silent hole", self.silent_hole_examples),
                                ("trade", self.trade_examples),
                                ("unrecorded market", self.unrecorded_examples)):
            lines += [f"  e.g. {title}: {example}" for example in examples]
        return "\n".join(lines)


def audit(
    truth: Truth,
    start: datetime,
    end: datetime,
    *,
    samples_per_market: int = 20,
    edges_per_market: int | None = None,
    lag_ms: int = 1000,
    instants: Iterable[datetime] = (),
    markets: Iterable[str] | None = None,
    include_combos: bool = False,
    seed: int = 0,
) -> AuditResult:
    """Judge the database against `truth` over [start, end] (see the module docstring).

    `instants` are checked for every market besides the sampled ones;
    `markets` limits the audit to those tickers (default: every market of
    the truth that existed during the window, combos only when asked).
    `edges_per_market` bounds how many of a market's gaps have their edges
    checked (drawn at random; default all): a long soak records thousands.
    """
    result = AuditResult(start, end)
    start_ms, end_ms = _ms(start), _ms(end)
    chosen = set(markets) if markets is not None else None
    existing = [
        m for m in truth.markets.values()
        if m.created_ms <= end_ms and m.close_ms >= start_ms
        and (include_combos or not m.combo) and (chosen is None or m.ticker in chosen)
    ]
    result.markets_existing = len(existing)
    gaps = _book_gaps({m.ticker for m in existing}, start, end)
    for rows in gaps.values():
        for gap in rows:
            result.gaps_by_reason[gap.reason] += 1
            result.open_gaps += gap.recovered_at is None
    rng = random.Random(seed)
    for market in sorted(existing, key=lambda m: m.ticker):
        edges = gaps.get(market.ticker, [])
        if edges_per_market is not None and len(edges) > edges_per_market:
            edges = rng.sample(edges, edges_per_market)
        _audit_books(truth, market, edges, result, start_ms, end_ms,
                     samples_per_market, lag_ms, list(instants), rng)
    _audit_markets(existing, result)
    _audit_trades(truth, result, start_ms, end_ms, chosen)
    return result


def _audit_books(truth, market, gaps, result, start_ms, end_ms, samples, lag_ms, extra, rng) -> None:
    first_ms = max(start_ms, market.created_ms)
    at_ms = {first_ms + rng.randrange(max(1, end_ms - first_ms + 1)) for _ in range(samples)}
    at = {_dt(ms) for ms in at_ms} | {_dt(end_ms)} | {x for x in extra if x >= _dt(first_ms)}
    for gap in gaps:  # the edges of each recorded hole: where a late or early edge shows
        at.add(gap.detected_at - ONE_MICROSECOND)
        if gap.recovered_at is not None:
            at.add(gap.recovered_at)
    at = sorted(x for x in at if _dt(first_ms) <= x <= _dt(end_ms))
    if not at:
        return
    result.markets_audited += 1
    truths = truth.books_between(market.ticker, [_ms(x) for x in at], lag_ms)
    for instant, true_books in zip(at, truths):
        result.samples += 1
        stored = book_at(market.ticker, instant)
        if stored.gap is not None:
            result.samples_in_gap += 1
            continue
        if stored.snapshot is None:
            if _ms(instant) - market.created_ms <= lag_ms:
                continue  # just created: its first snapshot is on its way
            kind, detail = "no_snapshot", "nothing recorded yet and no gap"
        elif any(stored.book == book for book in true_books):
            continue
        else:
            kind, detail = "wrong_book", _difference(stored.book, true_books[-1])
        result.silent_holes += 1
        result.silent_holes_by_kind[kind] += 1
        result.silent_hole_markets.add(market.ticker)
        if sum(f": {kind}: " in e for e in result.silent_hole_examples) < EXAMPLES:  # a few of each kind
            result.silent_hole_examples.append(f"{market.ticker} at {instant.isoformat()}: {kind}: {detail}")


def _audit_markets(existing, result) -> None:
    tickers = [m.ticker for m in existing]
    recorded = set(
        OrderbookSnapshot.objects.filter(market_ticker__in=tickers).exclude(source=SnapshotSource.REST)
        .values_list("market_ticker", flat=True).distinct()
    )
    with_hole = set(SequenceGap.objects.filter(market_ticker__in=tickers).values_list("market_ticker", flat=True))
    for ticker in sorted(tickers):
        if ticker in recorded:
            result.markets_recorded += 1
        elif ticker in with_hole:
            result.markets_hole_only += 1
        else:
            result.markets_unrecorded += 1
            if len(result.unrecorded_examples) < EXAMPLES:
                result.unrecorded_examples.append(ticker)


def _audit_trades(truth, result, start_ms, end_ms, chosen) -> None:
    owed = {t.trade_id: t for t in truth.trades
            if start_ms <= t.ts_ms <= end_ms and (chosen is None or t.market_ticker in chosen)}
    known = {t.trade_id for t in truth.trades}
    result.trades_expected = len(owed)
    rows = Trade.objects.values_list("trade_id", "market_ticker", "yes_price", "no_price", "count", "ts")
    if chosen is not None:
        rows = rows.filter(market_ticker__in=chosen)
    seen: Counter = Counter()
    for trade_id, ticker, yes, no, count, ts in rows.iterator():
        result.trades_stored += 1
        seen[trade_id] += 1
        if seen[trade_id] > 1:
            result.trades_duplicated += 1
            _example(result, f"{trade_id} ({ticker}) stored {seen[trade_id]} times")
        elif trade_id not in known:
            result.trades_unexpected += 1
            _example(result, f"{trade_id} ({ticker}) stored but never made")
        elif trade_id in owed:
            true = owed[trade_id]
            if (ticker, yes, no, count, ts) != (true.market_ticker, true.yes_price, true.no_price,
                                                 true.count, _dt(true.ts_ms)):
                result.trades_wrong += 1
                _example(result, f"{trade_id}: stored {(ticker, yes, no, count, ts)}, true {true}")
    for trade_id, true in owed.items():
        if trade_id not in seen:
            result.trades_missing += 1
            _example(result, f"{trade_id} ({true.market_ticker} at {_dt(true.ts_ms).isoformat()}) missing")


def time_to_record_all(tickers: Iterable[str], since: datetime) -> float | None:
    """Seconds from `since` until every ticker had a fresh replayable snapshot (None: some never did).

    After an outage or a restart, this is how long the record stayed blind.
    """
    tickers = list(tickers)
    if not tickers:
        return 0.0
    rows = dict(
        OrderbookSnapshot.objects.filter(market_ticker__in=tickers, received_at__gte=since)
        .exclude(source=SnapshotSource.REST).values_list("market_ticker").annotate(first=Min("received_at"))
    )
    if len(rows) < len(tickers):
        return None
    return (max(rows.values()) - since).total_seconds()


def _example(result: AuditResult, text: str) -> None:
    if len(result.trade_examples) < EXAMPLES:
        result.trade_examples.append(text)


def _book_gaps(tickers: set[str], start: datetime, end: datetime) -> dict[str, list[SequenceGap]]:
    """Each market's book gaps that touch the window, oldest first."""
    found: dict[str, list[SequenceGap]] = defaultdict(list)
    rows = (
        SequenceGap.objects.filter(market_ticker__in=tickers, channel=BOOK_CHANNEL, detected_at__lte=end)
        .exclude(recovered_at__lt=start)
        .order_by("detected_at")
    )
    for gap in rows.iterator():
        found[gap.market_ticker].append(gap)
    return found


def _difference(stored: OrderBook, true: OrderBook) -> str:
    """The levels where two books differ, briefly."""
    parts = []
    for side in ("yes", "no"):
        a, b = getattr(stored, side), getattr(true, side)
        for price in sorted(set(a) | set(b)):
            if a.get(price) != b.get(price):
                parts.append(f"{side} {price}: stored {a.get(price, 0)} true {b.get(price, 0)}")
    return "; ".join(parts[:4]) + (" ..." if len(parts) > 4 else "")


def _ms(at: datetime) -> int:
    return (at - EPOCH) // ONE_MS  # exact (floor), unlike float seconds


def _dt(ms: int) -> datetime:
    return EPOCH + ms * ONE_MS


__all__ = ["AuditResult", "Truth", "TrueMarket", "TrueTrade", "audit", "time_to_record_all"]
