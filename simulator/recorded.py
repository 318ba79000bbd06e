"""Our recorded history, served as Kalshi: the exchange behind `manage.py kalshi_replay`.

A `RecordedExchange` stands where the simulator's engine (exchange.py) stands:
it has the same `markets`, `events`, `series`, `trades` and `book()` that the
REST handlers (rest.py) and the WebSocket sessions (session.py) read, and it
advances by handing out exchange events. Those events are not made up: they
come, in the order our recorder received them, from the replay stream
(markets/replay_stream.py, the one place that reads the record in replay
order), so a bot connected to the replay sees what our recorder saw, in
Kalshi's own protocol, at the replay clock.

What the record does not know is never made up either. Inside a recorded
hole of a market's book (a gap: markets/record/gaps.py) that book is unknown:
at the hole's start every client subscribed to it is disconnected (BookHole,
as our recorder was, or as it lost frames), it gets no snapshot of it while
the hole lasts, and it gets one when the record has the book again
(BookRecovered, from the recorded re-baseline). A recorded hole in the trade
or lifecycle channel skips a sequence number on that channel (ChannelHole):
a client sees the loss as it would on Kalshi, and may fetch the trades over
REST, which serves every trade recorded up to the replay clock.

The clock (`ReplayClock`) runs at any speed, or, with speed 0, as fast as the
clients read: the replay then advances only while every client has drained
what it was sent, so nothing is dropped for a slow reader.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator, Sequence

import orjson

from collector.db import run_db
from markets.book import OrderBook
from markets.models import Event as EventRow, LifecycleEvent, Market as MarketRow, Series as SeriesRow
from markets.replay_stream import replay_runs

from .catalog import Event, Market, Series, Trade
from .record_reader import RecordReader
from .events import (
    BookDelta, BookHole, BookRecovered, ChannelHole, ExchangeEvent, RecordedLifecycle, TradeExecuted,
)

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_US = timedelta(microseconds=1)
BOOK_CHANNEL = "orderbook_delta"
# Lifecycle event types (as recorded) and the REST status they leave a market in.
STATUS_AFTER = {
    "created": "initialized",
    "activated": "active",
    "deactivated": "inactive",
    "determined": "determined",
    "settled": "finalized",
}
# The stream's event types, and the Kalshi message type of each recorded lifecycle row.
LIFECYCLE_KIND = {"event_created": "event_lifecycle", "event_fee_update": "event_fee_update"}
# Speed 0: advance by at most this many events at a time, and only while
# every client has fewer than LOW_WATER frames waiting.
MAX_SPEED_BATCH = 2_000
READ_AHEAD_LINES = 20_000
LOW_WATER = 2_000
TICK_SECONDS = 0.01
MIN_SLEEP_SECONDS = 0.0005
RECONNECT_WAIT_S = 5.0


def _us(iso: str | None) -> int | None:
    """Microseconds since the epoch of the stream's fixed-width ISO instant
    (YYYY-MM-DDTHH:MM:SS.ffffffZ, markets/replay_stream.iso_utc)."""
    if iso is None:
        return None
    return _second_us(iso[:19]) + int(iso[20:26])


@functools.lru_cache(maxsize=8192)
def _second_us(second: str) -> int:
    # Parsed once per second of history, not once per line (bench/replay_bench.py).
    return (datetime.fromisoformat(second + "+00:00") - EPOCH) // ONE_US


def _ms(value: datetime | str | None, default: int = 0) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(value.timestamp() * 1000)


def _decimal(value, default=None):
    return Decimal(str(value)) if value not in (None, "") else default


# -- the catalog, from our tables -------------------------------------------------


def series_from_row(row: SeriesRow) -> Series:
    return Series(
        ticker=row.ticker, title=row.title, category=row.category, frequency=row.frequency,
        tags=list(row.tags or []), fee_type=row.fee_type or "quadratic",
        fee_multiplier=row.fee_multiplier if row.fee_multiplier is not None else Decimal(1),
        updated_ms=_ms(row.updated_at),
    )


def event_from_row(row: EventRow, order: int) -> Event:
    meta = row.metadata or {}
    return Event(
        event_ticker=row.event_ticker, series_ticker=row.series_ticker, title=row.title,
        sub_title=row.sub_title, mutually_exclusive=bool(row.mutually_exclusive),
        collateral_return_type=row.collateral_return_type,
        strike_date_ms=_ms(row.strike_date), created_ms=_ms(meta.get("created_time"), _ms(row.discovered_at)),
        order=order, multivariate=bool(meta.get("mve_collection_ticker") or meta.get("is_multivariate")),
    )


def market_from_row(row: MarketRow, order: int) -> Market:
    """A market as REST listed it to our recorder (its raw object is in `metadata`)."""
    meta = row.metadata or {}
    rest = meta if "ticker" in meta else meta.get("rest") or {}
    created = meta.get("lifecycle_created") or {}
    created_ms = _ms(rest.get("created_time"), (created.get("open_ts") or 0) * 1000 or _ms(row.open_time))
    floor = row.floor_strike
    return Market(
        ticker=row.ticker, event_ticker=row.event_ticker, series_ticker=row.series_ticker,
        market_id=rest.get("id") or created.get("market_id") or str(uuid.uuid5(uuid.NAMESPACE_URL, row.ticker)),
        title=row.title, yes_sub_title=row.yes_sub_title, no_sub_title=row.no_sub_title,
        rules_primary=row.rules_primary, strike_type=row.strike_type,
        floor_strike=int(floor) if floor is not None and floor == int(floor) else floor,
        status=row.status or "active", created_ms=created_ms, open_ms=_ms(row.open_time),
        close_ms=_ms(row.close_time), expected_expiration_ms=_ms(row.expected_expiration_time),
        latest_expiration_ms=_ms(row.expiration_time),
        price_level_structure=row.price_level_structure or "linear_cent",
        fractional=bool(rest.get("fractional_trading_enabled", True)), order=order,
        updated_ms=_ms(rest.get("updated_time"), created_ms),
        can_close_early=bool(row.can_close_early) if row.can_close_early is not None else True,
        mve_collection_ticker=rest.get("mve_collection_ticker"),
        mve_selected_legs=rest.get("mve_selected_legs"),
    )


def status_at(market: Market, at_ms: int) -> str:
    """A market's REST status from its times alone (before any recorded lifecycle message)."""
    if at_ms < market.open_ms:
        return "initialized"
    if market.close_ms and at_ms >= market.close_ms:
        return "closed"
    return "active"


def apply_lifecycle(market: Market, event_type: str, payload: dict, at_ms: int) -> None:
    """What a market_lifecycle_v2 message changes in the market REST shows."""
    market.updated_ms = at_ms
    if event_type in STATUS_AFTER:
        market.status = STATUS_AFTER[event_type]
    if event_type == "close_date_updated" and payload.get("close_ts") is not None:
        market.close_ms = int(payload["close_ts"]) * 1000
        if market.close_ms <= at_ms:
            market.status = "closed"
    elif event_type == "determined":
        market.result = payload.get("result") or ""
        market.settlement_value = _decimal(payload.get("settlement_value"))
        market.determined_ms = at_ms
    elif event_type == "settled":
        market.settled_ms = at_ms
    elif event_type == "price_level_structure_updated" and payload.get("price_level_structure"):
        market.price_level_structure = payload["price_level_structure"]
    elif event_type == "metadata_updated":
        for key in ("yes_sub_title", "no_sub_title", "strike_type", "floor_strike"):
            if key in payload:
                setattr(market, key, payload[key])


# -- the exchange ------------------------------------------------------------------


class RecordedExchange:
    """The exchange as our record saw it, at the replay clock (see the module docstring)."""

    def __init__(self, market_tickers: Sequence[str], start: datetime, end: datetime, *,
                 in_process: bool = False):
        self.start, self.end = start, end
        self.start_us = (start - EPOCH) // ONE_US
        self.end_us = (end - EPOCH) // ONE_US
        self.clock_us = self.start_us
        self.steps = 0
        tickers = list(dict.fromkeys(market_tickers))
        rows = MarketRow.objects.filter(ticker__in=tickers).order_by("ticker")
        catalog = [market_from_row(row, order) for order, row in enumerate(rows)]
        self.series = {row.ticker: series_from_row(row) for row in SeriesRow.objects.filter(
            ticker__in={m.series_ticker for m in catalog})}
        self.events = {row.event_ticker: event_from_row(row, order) for order, row in enumerate(
            EventRow.objects.filter(event_ticker__in={m.event_ticker for m in catalog}).order_by("event_ticker"))}
        start_ms = self.start_us // 1000
        for market in catalog:
            market.status = status_at(market, start_ms)
        by_ticker = {m.ticker: m for m in catalog}
        # Lifecycle recorded before the start sets each market's state at the start.
        earlier = LifecycleEvent.objects.filter(
            market_ticker__in=tickers, received_at__lt=start).order_by("received_at", "id")
        for row in earlier.iterator(chunk_size=5_000):
            market = by_ticker.get(row.market_ticker)
            if market is not None:
                apply_lifecycle(market, row.event_type, row.payload or {}, _ms(row.received_at))
        # A market created after the start is listed from then on.
        self.markets: dict[str, Market] = {}
        self._unlisted: dict[str, Market] = {}
        for market in catalog:
            (self.markets if market.created_ms <= start_ms else self._unlisted)[market.ticker] = market
        self.books: dict[str, OrderBook] = {}
        self._unknown: set[str] = set()  # markets whose book the record does not know now
        self._open_holes: dict[str, int] = {}  # market -> the hole's end (µs), None-free
        self.trades: list[Trade] = []
        # The replay stream, read in a child process (record_reader.py) or,
        # with in_process=True, here (one fewer process; half the speed).
        types = ("deltas", "trades", "lifecycle")
        self._reader = None if in_process else RecordReader(tickers, start, end, types=types)
        self._stream: Iterator[list[str]] = (
            replay_runs(market_tickers=tickers, start_time=start, end_time=end, types=types)
            if in_process else self._reader.runs()
        )
        # Lines read from the record and not yet replayed. Only fill() reads
        # the database (in a worker thread); advancing never waits on it.
        self._runs: deque[list[str]] = deque()
        self._run: list[str] = []
        self._position = 0
        self._buffered_until_us = self.start_us - 1  # received_at of the last line read
        # Lines read (by fill, in its thread) and used (by advancing, in the
        # loop): two counters, each written by one side only.
        self._lines_read = 0
        self._lines_used = 0
        self._exhausted = False
        self._next: dict | None = None  # the next line, parsed
        self._next_us: int | None = None  # and when it happens
        self._open()

    def _open(self) -> None:
        """Each market's book at the start (the stream's first lines), before any client asks for one."""
        self.fill(self.start_us)
        self._peek()
        while self._next_us is not None and self._next.get("source") == "start":
            event = self._take()
            self._on_snapshot(event["market_ticker"], event, self.start_us, [])
            self._peek()

    def close(self) -> None:
        """Stop reading the record (the reader process, if any)."""
        if self._reader is not None:
            self._reader.close()

    # -- what rest.py and session.py read --------------------------------------------

    def book(self, ticker: str) -> OrderBook:
        book = self.books.get(ticker)
        if book is None:
            book = self.books[ticker] = OrderBook()
        return book

    def book_known(self, ticker: str) -> bool:
        return ticker not in self._unknown

    @property
    def done(self) -> bool:
        """Every recorded event of the window has been replayed."""
        self._peek()
        return self._exhausted and self._next_us is None

    @property
    def next_us(self) -> int | None:
        """When the next read event happens (None: none is read yet, or the record is exhausted)."""
        self._peek()
        return self._next_us

    # -- reading (in a worker thread) -------------------------------------------------

    def fill(self, until_us: int, lines: int = 0) -> None:
        """Read the record until it covers `until_us` and at least `lines` unreplayed lines.

        Synchronous, and the only method that touches the database: call it
        through collector.db.run_db. The stream reads in bounded keyset
        batches, so memory stays bounded at any speed."""
        while self.wants_fill(until_us, lines):
            run = next(self._stream, None)
            if run is None:
                self._exhausted = True
                break
            if run:
                self._runs.append(run)
                self._lines_read += len(run)
                self._buffered_until_us = _us(_received_at(run[-1]))

    def wants_fill(self, until_us: int, lines: int = 0) -> bool:
        buffered = self._lines_read - self._lines_used
        return not self._exhausted and (self._buffered_until_us < until_us or buffered < lines)

    # -- advancing (in the event loop) -----------------------------------------------

    def step(self, now_ms: int) -> list[ExchangeEvent]:
        return self.advance_to(now_ms * 1000)

    def advance_to(self, until_us: int, limit: int | None = None) -> list[ExchangeEvent]:
        """Every read event received at or before `until_us` (at most `limit`), as exchange events.

        The clock moves to `until_us` only if the record read so far covers it."""
        until_us = min(until_us, self.end_us)
        out: list[ExchangeEvent] = []
        applied = 0
        self._peek()
        while self._next_us is not None and self._next_us <= until_us:
            if limit is not None and applied >= limit:
                break
            self.clock_us = max(self.clock_us, self._next_us)
            self._apply(self._take(), out)
            applied += 1
            self._peek()
            if out and isinstance(out[-1], BookHole) and self._next_us != self.clock_us:
                break  # the clients it closes get the chance to come back before what follows
        else:
            if self._exhausted or self._buffered_until_us >= until_us:
                self.clock_us = max(self.clock_us, until_us)
        self._list_created(self.clock_us // 1000)
        self.steps += 1
        return out

    def _peek(self) -> None:
        """Parse the next line (once) and note when it happens."""
        if self._next is not None:
            return
        while self._position >= len(self._run):
            if not self._runs:
                self._next_us = None
                return
            self._run, self._position = self._runs.popleft(), 0
        self._next = orjson.loads(self._run[self._position])
        self._next_us = _us(self._next["received_at"])

    def _take(self) -> dict:
        """The next line's event (after _peek found one), moving past it."""
        event, self._next, self._next_us = self._next, None, None
        self._position += 1
        self._lines_used += 1
        return event

    def _list_created(self, now_ms: int) -> None:
        if self._unlisted:
            for ticker in [t for t, m in self._unlisted.items() if m.created_ms <= now_ms]:
                self.markets[ticker] = self._unlisted.pop(ticker)

    def _apply(self, event: dict, out: list) -> None:
        kind = event["type"]
        ticker = event.get("market_ticker") or ""
        at_us = self.clock_us
        at_ms = at_us // 1000
        if kind == "delta":
            if ticker in self._unknown:
                return  # inside a recorded hole: not a book anyone should rebuild
            price, delta = Decimal(event["price"]), Decimal(event["delta"])
            self.book(ticker).apply_delta(event["side"], price, delta)
            ts_ms = _us(event["ts"]) // 1000 if event.get("ts") else at_ms
            out.append(BookDelta(ticker, event["side"], price, delta, ts_ms))
        elif kind == "snapshot":
            self._on_snapshot(ticker, event, at_us, out)
        elif kind == "gap":
            self._on_gap(event, at_us, out)
        elif kind == "trade":
            trade = Trade(
                trade_id=event["trade_id"], market_ticker=ticker,
                yes_price=Decimal(event["yes_price"]), no_price=Decimal(event["no_price"]),
                count=Decimal(event["count"]), taker_outcome_side=event["taker_outcome_side"],
                is_block_trade=bool(event.get("is_block_trade")),
                ts_ms=_us(event["ts"]) // 1000, index=len(self.trades),
            )
            self.trades.append(trade)
            if ticker in self.markets:
                market = self.markets[ticker]
                market.last_price, market.last_trade_size = trade.yes_price, trade.count
                market.volume += trade.count
            out.append(TradeExecuted(trade))
        elif kind == "lifecycle":
            self._on_lifecycle(ticker, event, at_ms, out)

    def _on_snapshot(self, ticker: str, event: dict, at_us: int, out: list) -> None:
        source = event.get("source")
        levels = (event.get("yes") or [], event.get("no") or [])
        if source == "start":
            # The book as it stood at the start, or unknown inside a hole.
            if event.get("complete"):
                self.books[ticker] = OrderBook.from_levels(*levels)
            else:
                # Inside a recorded hole until it ends; before the market's
                # first snapshot, until that snapshot.
                self._unknown.add(ticker)
                gap = event.get("gap")
                if gap is None:
                    self._open_holes[ticker] = self.start_us
                else:
                    self._open_holes[ticker] = _us(gap["end"]) if gap.get("end") else self.end_us + 1
            return
        if ticker in self._unknown:
            end = self._open_holes.get(ticker)
            if end is not None and at_us >= end:
                # The recorded re-baseline that ended the hole.
                book = self.books[ticker] = OrderBook.from_levels(*levels)
                self._unknown.discard(ticker)
                self._open_holes.pop(ticker, None)
                out.append(BookRecovered(ticker, at_us // 1000, book.copy()))
            return
        # A checkpoint or a re-subscription's snapshot of a book we know: it
        # equals ours (the record is consistent), so a client learns nothing new.

    def _on_gap(self, event: dict, at_us: int, out: list) -> None:
        channel = event.get("channel")
        end_us = _us(event["end"]) if event.get("end") else self.end_us + 1
        if channel == BOOK_CHANNEL:
            ticker = event.get("market_ticker") or ""
            if not ticker or end_us <= at_us:
                return
            fresh = ticker not in self._unknown
            self._unknown.add(ticker)
            self._open_holes[ticker] = max(end_us, self._open_holes.get(ticker, 0))
            if fresh:
                # Holes that start at once (one sid's markets) make one disconnect.
                if out and isinstance(out[-1], BookHole) and out[-1].ts_ms == at_us // 1000:
                    out[-1] = BookHole(out[-1].market_tickers | {ticker}, out[-1].ts_ms)
                else:
                    out.append(BookHole(frozenset({ticker}), at_us // 1000))
        elif channel in ("trade", "market_lifecycle_v2"):
            out.append(ChannelHole(channel, at_us // 1000))

    def _on_lifecycle(self, ticker: str, event: dict, at_ms: int, out: list) -> None:
        event_type = event.get("event_type") or ""
        payload = event.get("payload") or {}
        if ticker:
            market = self.markets.get(ticker) or self._unlisted.pop(ticker, None)
            if market is not None:
                self.markets[ticker] = market
                apply_lifecycle(market, event_type, payload, at_ms)
            out.append(RecordedLifecycle("market_lifecycle_v2", ticker, payload, at_ms))
        else:
            kind = LIFECYCLE_KIND.get(event_type)
            if kind is not None:
                out.append(RecordedLifecycle(kind, "", payload, at_ms))


def _received_at(line: str) -> str:
    start = line.index('"received_at":"') + len('"received_at":"')
    return line[start:line.index('"', start)]


# -- the clock ---------------------------------------------------------------------


@dataclass
class ReplayClock:
    """Replay time, running `speed` times as fast as the wall clock (0: as fast as clients read).

    It starts at `start_us` when the first client subscribes, and pauses
    while clients that a recorded hole disconnected come back (at most
    RECONNECT_WAIT_S), so a replayed hole costs them the hole and nothing
    more. `segments` holds each (re)start as (monotonic s, wall s, replay µs):
    with them, a wall instant maps to a replay instant and back."""

    start_us: int
    speed: float
    segments: list = field(default_factory=list)

    def resume(self, at_us: int) -> None:
        self.segments.append((time.monotonic(), time.time(), at_us))

    def target_us(self) -> int:
        mono, _, at_us = self.segments[-1]
        return at_us + int((time.monotonic() - mono) * self.speed * 1_000_000)

    def replay_at_wall(self, wall_s: float) -> int:
        """The replay instant (µs) the clock showed at wall time `wall_s`."""
        index = max(0, bisect.bisect_right([seg[1] for seg in self.segments], wall_s) - 1)
        _, wall, at_us = self.segments[index]
        value = at_us + int((wall_s - wall) * self.speed * 1_000_000)
        if index + 1 < len(self.segments):
            value = min(value, self.segments[index + 1][2])  # paused until the next segment
        return value

    def wall_at_replay(self, at_us: int) -> float:
        """The wall time (s) at which the clock reached replay instant `at_us` (the last time, after a pause)."""
        index = max(0, bisect.bisect_right([seg[2] for seg in self.segments], at_us) - 1)
        _, wall, start_us = self.segments[index]
        return wall + (at_us - start_us) / self.speed / 1_000_000


async def run_replay(sim, exchange: RecordedExchange, clock: ReplayClock, *, wait_for_client: bool = True) -> None:
    """Advance the exchange by the clock and hand its events to the clients until the window ends.

    The clock starts when the first client has subscribed (speed > 0) or
    follows the clients' reading (speed 0). The record is read ahead in a
    worker thread while events are sent, so reading and sending overlap."""
    if clock.speed > 0:
        if wait_for_client:
            await _first_subscriber(sim)
        clock.resume(exchange.clock_us)
        # A second of replay time ahead, so a slow read never stalls the clock.
        reader = asyncio.create_task(_read_ahead(
            exchange, lambda: (clock.target_us() + int(clock.speed * 1_000_000), 0)))
    else:
        reader = asyncio.create_task(_read_ahead(exchange, lambda: (exchange.clock_us, READ_AHEAD_LINES)))
    try:
        while exchange.clock_us < exchange.end_us:
            if clock.speed > 0:
                target = clock.target_us()
                while exchange.wants_fill(target) and not reader.done():
                    await asyncio.sleep(MIN_SLEEP_SECONDS)  # the record is behind the clock
                events = exchange.advance_to(target)
                sim.publish(events)
                if any(isinstance(e, BookHole) for e in events) and _dropped(sim):
                    await _reconnected(sim)
                    clock.resume(exchange.clock_us)
                # Wake when the next event is due (within a tick), so it leaves on time.
                due = exchange.next_us
                wait = TICK_SECONDS if due is None else (due - clock.target_us()) / clock.speed / 1_000_000
                await asyncio.sleep(min(TICK_SECONDS, max(MIN_SLEEP_SECONDS, wait)))
            else:
                await _clients_ready(sim)
                events = exchange.advance_to(exchange.end_us, limit=MAX_SPEED_BATCH)
                sim.publish(events)
                # Nothing to send: the reader is behind (or the lines were checkpoints).
                await asyncio.sleep(0 if events else MIN_SLEEP_SECONDS)
            if reader.done():
                reader.result()  # a failed read stops the replay with its error
    finally:
        reader.cancel()


async def _read_ahead(exchange: RecordedExchange, wanted) -> None:
    """Keep the exchange's buffer ahead of the clock: `wanted()` gives (until µs, lines)."""
    while not exchange.done:
        until_us, lines = wanted()
        if exchange.wants_fill(until_us, lines):
            await run_db(exchange.fill, until_us, lines)
        else:
            await asyncio.sleep(MIN_SLEEP_SECONDS)
        if exchange._exhausted:
            return


def _dropped(sim) -> bool:
    return any(c.closing for c in sim.connections)


async def _reconnected(sim) -> None:
    """Wait (at most RECONNECT_WAIT_S) until the clients a hole closed are back and subscribed."""
    try:
        await asyncio.wait_for(_clients_ready(sim), RECONNECT_WAIT_S)
    except TimeoutError:
        logger.warning("replay: a client disconnected by a recorded hole did not come back in %ss; "
                       "the clock goes on", RECONNECT_WAIT_S)


def _subscribed(sim) -> bool:
    return bool(sim.connections) and all(c.session.subscriptions for c in sim.connections if not c.closing)


async def _first_subscriber(sim) -> None:
    while not _subscribed(sim):
        await asyncio.sleep(TICK_SECONDS)


async def _clients_ready(sim) -> None:
    """As fast as the clients read: wait until one is subscribed and none has much unsent."""
    while True:
        open_ = [c for c in sim.connections if not c.closing]
        quiet = all(time.monotonic() - c.last_command_at > 0.1 for c in open_)
        if open_ and quiet and _subscribed(sim) and all(c.unsent < LOW_WATER for c in open_):
            return
        await asyncio.sleep(0.001 if open_ else TICK_SECONDS)


def replay_config(**overrides):
    """The served protocol: Kalshi's, without the simulator's own hostility or
    generation (the record's holes are the faults), and nothing historical."""
    from .config import SimulatorConfig

    settings = dict(rate=0, historical_age_s=10 * 365 * 86400.0, rest_rate_per_s=None, ws_compression=False)
    settings.update(overrides)
    return SimulatorConfig(**settings)


def replay_simulator(exchange: RecordedExchange, clock: ReplayClock, **kwargs):
    """A Simulator (the protocol server) over a RecordedExchange, on the replay clock."""
    from .simulator import Simulator

    config = kwargs.pop("config", None) or replay_config()
    return Simulator(config, exchange=exchange, record_events=False,
                     clock=lambda: exchange.clock_us // 1000, **kwargs)
