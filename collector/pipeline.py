"""Frames in, rows and commands out: the collector's core, with no network.

`Pipeline.handle(raw)` takes one WebSocket text frame and

1. stamps it with a strictly increasing `received_at` (the replay order of
   markets/models/timeseries.py depends on it);
2. parses it (kalshi/messages.py); a malformed frame is logged with
   its raw text, counted, and otherwise ignored: nothing here raises;
3. sequences it per (session, sid) (collector/sequencer.py): duplicates are
   dropped, a gap is recorded and acted on;
4. keeps every subscribed market's OrderBook (markets/book.py) and writes, via
   the Writer, the deltas, trades, Kalshi's snapshots, its own checkpoint
   snapshots, lifecycle messages and the gaps in the record;
5. returns the commands (collector/commands.py) the I/O layer must carry out.

Gap policy (PROTOCOL.md §5). A gap on an order-book sid is a gap for every
ticker on it: each gets a SequenceGap row, its book is unreliable from that
moment (its deltas are dropped, not written), and RequestSnapshots asks for
fresh snapshots; the snapshot re-baselines the book and sets recovered_at.
A gap on the trade channel records one channel-wide row and asks for a REST
backfill of the window; the row stays open until that backfill has
succeeded (collector/backfill.py closes it). On the lifecycle channel it
records a channel-wide row. Terminal errors 10/25 and a lost connection are gaps too.

Sequence discipline. Only data frames are sequenced; a reply's seq is
remembered by the sequencer (see collector/sequencer.py for the two
conventions). While a connection's convention is unproven, a data frame that
skips exactly a reply's number is UNCERTAIN: its sid's books stay reliable and
each is checked against a fresh snapshot; a book that differs gets a hole from
that frame to its snapshot, and a book that leaves (a gap, a disconnect, an
unsubscribe) before its check has its hole start there too. A numbered frame that fails to parse still uses up its seq, and
when its ticker is a book we keep it opens a `malformed` gap for that ticker.
A delta that would drive a level below zero, or that crosses the book (best
yes bid + best no bid > 1), proves a lost message: an `invalid_book` gap and a
fresh snapshot. Every gap begins just after the last frame received on the
connection before the one that revealed it (a half-open socket noticed late is a hole
from its last sign of life, not from the moment we noticed). At most one
snapshot request per market is outstanding; `tick()` asks again for those
unanswered after `snapshot_retry_seconds`.

Book prices are stored in no-leg pricing, as Kalshi sends them with
use_yes_price=false (the I/O layer sends the flag from
CollectorConfig.use_yes_price). Should the flag be set, NO-side prices arrive
on the YES scale and are turned back into no-leg prices (1 - p) here, so the
stored record never mixes the two.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from markets.book import OrderBook
from markets.models import GapReason, SnapshotSource

from .commands import (
    BackfillTrades,
    Command,
    EventCreated,
    MarketCreated,
    MarketDetermined,
    MarketSettled,
    RequestSnapshots,
    Resubscribe,
)
from .config import CollectorConfig
from kalshi.messages import (
    ErrorMsg,
    EventFeeUpdateMsg,
    EventLifecycleMsg,
    MalformedFrame,
    MarketLifecycleMsg,
    OkMsg,
    OrderbookDeltaMsg,
    OrderbookSnapshotMsg,
    SubscribedMsg,
    TickerMsg,
    TradeMsg,
    UnsubscribedMsg,
    parse_frame,
)
from .sequencer import Sequencer, SidState, Verdict

log = logging.getLogger(__name__)

ORDERBOOK = "orderbook_delta"
TRADE = "trade"
LIFECYCLE = "market_lifecycle_v2"
# Which channel a message type arrives on, for sids whose `subscribed` we
# did not see (e.g. frames replayed from an archive).
_CHANNEL_OF = {
    OrderbookSnapshotMsg: ORDERBOOK,
    OrderbookDeltaMsg: ORDERBOOK,
    TradeMsg: TRADE,
    EventLifecycleMsg: LIFECYCLE,
    EventFeeUpdateMsg: LIFECYCLE,
}
_ONE_MICROSECOND = timedelta(microseconds=1)
_ONE_DOLLAR = Decimal(1)
# Plain strings (not the enum members) in rows: the drivers and the journal
# then see exactly the stored value.
SUBSCRIBE = SnapshotSource.SUBSCRIBE.value
RESYNC = SnapshotSource.RESYNC.value
CHECKPOINT = SnapshotSource.CHECKPOINT.value
SEQ_GAP = GapReason.SEQ_GAP.value
DISCONNECT = GapReason.DISCONNECT.value
TERMINAL_ERROR = GapReason.TERMINAL_ERROR.value
MALFORMED = GapReason.MALFORMED.value
SUBSCRIBE_REFUSED = GapReason.SUBSCRIBE_REFUSED.value
NOT_SUBSCRIBED = GapReason.NOT_SUBSCRIBED.value
INVALID_BOOK = GapReason.INVALID_BOOK.value
# Replies: their seq is remembered, never judged (collector/sequencer.py).
_BOOK_KINDS = (OrderbookDeltaMsg, OrderbookSnapshotMsg)
_REPLY_KINDS = frozenset({OkMsg, ErrorMsg, UnsubscribedMsg})


def _next_midnight(at: datetime) -> datetime:
    """The UTC midnight after `at`."""
    day = at.astimezone(timezone.utc).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RecordState:
    """What every connection's pipeline shares about the record of one process.

    The collector spreads its markets over several connections, one Pipeline
    each (collector/connections.py); a market can move from one to another
    (a connection found full). These facts are about the market, not the
    connection, so they live here: which books are in an open hole, which
    have had a snapshot since the process started, and the receive clock,
    strictly increasing across all connections, so that a market's rows keep
    their replay order whichever connection wrote them.
    """

    __slots__ = ("gapped", "baselined", "clock", "last_received")

    def __init__(self, clock=None) -> None:
        self.gapped: set[str] = set()
        self.baselined: set[str] = set()
        self.clock = clock or _utcnow
        self.last_received: datetime | None = None

    def stamp(self, received_at: datetime | None) -> datetime:
        """`received_at` (now when None), made later than every stamp before it."""
        if received_at is None:
            now = self.clock()
        elif received_at.tzinfo is None:
            now = received_at.replace(tzinfo=timezone.utc)  # naive means UTC here
        else:
            now = received_at
        last = self.last_received
        if last is not None and now <= last:
            now = last + _ONE_MICROSECOND
        self.last_received = now
        return now


@dataclass(slots=True)
class LiveBook:
    """One subscribed market's book in this session."""

    sid: int
    book: OrderBook | None  # None until its first snapshot
    reliable: bool
    deltas_since_snapshot: int = 0
    # The UTC midnight after the last snapshot or checkpoint: the first delta
    # at or after it is checkpointed (see Pipeline._on_delta).
    next_day: datetime | None = None


class Pipeline:
    """See the module docstring. Not thread-safe: one connection feeds it.

    `state` is shared by the pipelines of one process (RecordState); a
    pipeline on its own makes its own.
    """

    def __init__(self, writer, config: CollectorConfig | None = None, clock=None,
                 state: RecordState | None = None) -> None:
        self.writer = writer
        self.config = config or CollectorConfig()
        self.state = state or RecordState(clock)
        self._clock = self.state.clock
        self._stamp = self.state.stamp
        self.session_id: int | None = None
        self.sequencer = Sequencer()
        self.books: dict[str, LiveBook] = {}
        # command id -> [(channel, tickers)] the I/O layer asked for.
        self._expected: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
        # Tickers whose book has an open gap (survives a reconnect), and
        # tickers that have had a snapshot since this process started.
        self._gapped = self.state.gapped
        self._baselined = self.state.baselined
        # channel -> time since which it has been broken (trade / lifecycle),
        # until a new subscription to it is confirmed.
        self._channel_break: dict[str, datetime] = {}
        # trade sid -> the earliest time of the last in-order trade frame.
        self._trade_last: dict[int, datetime] = {}
        # Keys of the open trade holes of the current break, which the
        # backfill asked for at resubscribe closes.
        self._trade_break_gaps: list[tuple] = []
        # When this process's first trade subscription was confirmed: the
        # end of the window a crash or a stop left unrecorded.
        self.trade_live_at: datetime | None = None
        self._session_started: datetime | None = None
        # received_at of the previous / latest frame of this session: where a
        # gap revealed by the next frame (or by the connection dropping) begins.
        self._prev_frame_at: datetime | None = None
        self._last_frame_at: datetime | None = None
        # ticker -> when its outstanding snapshot request was made.
        self._snapshot_asked: dict[str, datetime] = {}
        # Books to check against their next snapshot after an UNCERTAIN skip:
        # ticker -> (where a hole would begin, sid, expected seq, received seq).
        self._unchecked: dict[str, tuple[datetime, int, int, int]] = {}
        self._snapshot_retry = timedelta(seconds=self.config.snapshot_retry_seconds)
        # Sids of this session that Kalshi ended or we unsubscribed: late
        # frames on them are ignored (the new subscription re-baselines).
        self._dead_sids: set[int] = set()
        self._every_deltas = self.config.checkpoint_every_deltas
        self._margin = timedelta(seconds=self.config.backfill_margin_seconds)
        self._yes_scale = self.config.use_yes_price
        self.counters: Counter = Counter()
        # Called (no arguments) when the lifecycle stream loses messages: the
        # catalog then lists markets again over REST.
        self.on_lifecycle_gap = None
        self._by_type: Counter = Counter()
        self._frames = 0
        self._deltas = 0
        self._lag: timedelta | None = None
        self._lag_max: timedelta | None = None
        # collector/raw_archive.py ArchiveTap, or None: every frame and
        # session event, with the stamps used, so a replay rebuilds the rows.
        self.archive = None

    # -- sessions ------------------------------------------------------------------

    def start_session(self, session_id: int) -> None:
        """A new WebSocket connection; `session_id` is its connect time in µs."""
        if self.session_id is not None:
            self.end_session()
        self.session_id = session_id
        self._session_started = self._stamp(None)
        self._last_frame_at = self._session_started
        if self.archive is not None:
            self.archive.session_started(session_id, self._session_started)
        self._expected.clear()
        self._dead_sids.clear()
        self.counters["sessions"] += 1

    def end_session(self, at: datetime | None = None) -> None:
        """The connection dropped: every subscribed ticker has a gap from now.

        Books and sids are forgotten (a reconnect brings new sids); the new
        subscription's snapshots close the gaps, and a new trade subscription
        asks for a backfill of the break.
        """
        if self.session_id is None:
            return
        if self.archive is not None:
            self.archive.session_ended(self.session_id, at)
        if at is None and self._last_frame_at is not None:
            # The hole begins just after the last frame this connection delivered.
            at = self._last_frame_at + _ONE_MICROSECOND
        else:
            at = self._stamp(at)
        session = self.session_id
        sids = self.sequencer.forget_session(session)
        book_tickers = set(self.books)
        for sid, state in sids:
            channel = state.channel
            if channel == ORDERBOOK:
                book_tickers |= state.tickers
            elif channel in (TRADE, LIFECYCLE):
                self._break_channel(channel, sid, at, DISCONNECT, None, None)
        for ticker in sorted(book_tickers):
            sid = self.books[ticker].sid if ticker in self.books else None
            self._open_gap(ticker, ORDERBOOK, DISCONNECT, sid, None, None, at)
        self.counters["disconnects"] += 1
        self.books.clear()
        self._trade_last.clear()
        self._expected.clear()
        self._snapshot_asked.clear()  # the next session's subscribe brings them
        self._unchecked.clear()  # each book's hole above began at its check's start
        self.session_id = None

    def expect_subscription(self, command_id: int, channel: str, market_tickers) -> None:
        """The I/O layer is about to send subscribe `command_id` for `channel`."""
        if self.archive is not None:
            self.archive.subscription_expected(self.session_id, command_id, channel, market_tickers)
        self._expected.setdefault(command_id, []).append((channel, tuple(market_tickers or ())))

    # -- frames --------------------------------------------------------------------

    def handle(self, raw: str | bytes, received_at: datetime | None = None) -> list[Command]:
        """One frame: stamp, parse, sequence, apply, write; return commands."""
        at = self._stamp(received_at)
        self._frames += 1  # a plain int: this runs for every frame
        if self.session_id is None:
            # Frames without start_session (archives, tests): one session.
            self.start_session(int(at.timestamp() * 1_000_000))
        self._prev_frame_at = self._last_frame_at
        self._last_frame_at = at
        if self.archive is not None:
            self.archive.frame(raw, at, self.session_id)
        try:
            msg = parse_frame(raw)
        except MalformedFrame as exc:
            self._malformed(exc.reason, raw)
            return self._malformed_numbered(raw, at)
        kind = type(msg)
        self._by_type[msg.type] += 1
        if self._dead_sids and msg.sid in self._dead_sids and kind is not SubscribedMsg:
            self.counters["frames_on_ended_sids"] += 1
            return []
        try:
            commands: list[Command] = []
            if msg.seq is not None and msg.sid is not None:
                if kind in _REPLY_KINDS:
                    self.sequencer.reply(self.session_id, msg.sid, msg.seq)
                    return self._on_reply(msg, at, commands)
                outcome = self.sequencer.check(self.session_id, msg.sid, msg.seq)
                verdict = outcome.verdict
                if verdict is not Verdict.IN_ORDER:
                    if verdict is Verdict.DUPLICATE:
                        self.counters["duplicates"] += 1
                        return commands
                    if verdict is Verdict.UNCERTAIN and type(msg) in _BOOK_KINDS:
                        self._on_uncertain(msg, outcome.expected, outcome.received, at, commands)
                    else:
                        self._on_gap(msg, outcome.expected, outcome.received, at, commands)
            if kind is OrderbookDeltaMsg:
                self._on_delta(msg, at, commands)
            elif kind is TradeMsg:
                self._on_trade(msg, at)
            elif kind is OrderbookSnapshotMsg:
                self._on_snapshot(msg, at)
            else:
                return self._on_reply(msg, at, commands)
            return commands
        except Exception as exc:  # noqa: BLE001 - a frame must never stop the collector
            log.exception("pipeline: failed on a %s frame", msg.type)
            self._malformed(f"{type(exc).__name__}: {exc}", raw)
            return []

    def _on_reply(self, msg, at: datetime, commands: list) -> list[Command]:
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg, at, commands)
        return commands

    def _malformed_numbered(self, raw, at: datetime) -> list[Command]:
        """A frame that failed to parse still used up its seq (if it had one).

        Its ticker, when it names a book we keep, lost a message: a
        `malformed` gap and a fresh snapshot. Replies are told apart by type.
        """
        sid, seq, kind, ticker = _salvage(raw)
        commands: list[Command] = []
        if sid is None or seq is None or self.session_id is None:
            return commands
        if kind in ("ok", "error", "unsubscribed", "subscribed"):
            self.sequencer.reply(self.session_id, sid, seq)
            return commands
        outcome = self.sequencer.check(self.session_id, sid, seq)
        if outcome.verdict is Verdict.DUPLICATE:
            return commands
        if outcome.verdict in (Verdict.GAP, Verdict.UNCERTAIN):
            self._sid_gap(sid, None, None, outcome.expected, outcome.received, at, commands, None)
        state = self.sequencer.get(self.session_id, sid)
        channel = state.channel if state is not None else None
        if channel == TRADE or kind == "trade":
            # The trade it carried is lost: the window is fetched from REST.
            since = self._trade_last.get(sid, self._session_started or at)
            # Open until its backfill has succeeded, as every trade hole.
            key = self._open_gap("", TRADE, MALFORMED, sid, seq, seq, self._gap_start(at))
            commands.append(BackfillTrades(since - self._margin, at + self._margin, gaps=(key,)))
            return commands
        if ticker is None and channel == ORDERBOOK and outcome.verdict is Verdict.IN_ORDER:
            # Its ticker cannot be read: any book of the sid may have lost it.
            self._sid_gap(sid, ORDERBOOK, None, seq, seq, at, commands, None)
            return commands
        live = self.books.get(ticker) if ticker else None
        if live is not None and live.reliable:
            live.reliable = False
            self._open_gap(ticker, ORDERBOOK, MALFORMED, sid, seq, seq, self._gap_start(at))
            self._ask_snapshots(live.sid, (ticker,), at, commands)
        return commands

    def _gap_start(self, at: datetime) -> datetime:
        """Where a gap revealed by the frame received at `at` begins."""
        prev = self._prev_frame_at
        # Just after it: the book as of the previous frame itself was whole.
        return prev + _ONE_MICROSECOND if prev is not None and prev < at else at

    def _ask_snapshots(self, sid: int, tickers, at: datetime, commands: list) -> None:
        """RequestSnapshots for those of `tickers` with no request outstanding."""
        asked = self._snapshot_asked
        retry = self._snapshot_retry
        wanted = tuple(t for t in tickers if t not in asked or at - asked[t] >= retry)
        if not wanted:
            return
        for ticker in wanted:
            asked[ticker] = at
        commands.append(RequestSnapshots(sid, wanted))

    def tick(self, now: datetime | None = None) -> list[Command]:
        """Ask again for snapshots whose request went unanswered too long.

        The I/O layer calls this every few seconds; frames alone cannot tell
        that an answer was lost when the stream is otherwise quiet.
        """
        now = now or self._clock()
        commands: list[Command] = []
        by_sid: dict[int, list[str]] = {}
        for ticker, live in self.books.items():
            if not live.reliable or ticker in self._unchecked:
                asked = self._snapshot_asked.get(ticker)
                if asked is None or now - asked >= self._snapshot_retry:
                    by_sid.setdefault(live.sid, []).append(ticker)
        for sid, tickers in by_sid.items():
            self._ask_snapshots(sid, sorted(tickers), now, commands)
        return commands

    # -- order books ----------------------------------------------------------------

    def _on_delta(self, msg: OrderbookDeltaMsg, at: datetime, commands: list) -> None:
        ticker = msg.market_ticker
        live = self.books.get(ticker)
        if live is None or not live.reliable:
            if live is None and msg.sid is not None:
                # A delta before any snapshot: its snapshot was lost. Treat
                # it as a gap for this ticker and ask for one.
                self.counters["deltas_without_book"] += 1
                self._sid_state(msg.sid, ORDERBOOK).tickers.add(ticker)
                self.books[ticker] = LiveBook(msg.sid, None, False)
                self._open_gap(ticker, ORDERBOOK, SEQ_GAP, msg.sid, None, msg.seq, self._gap_start(at))
                self._ask_snapshots(msg.sid, (ticker,), at, commands)
            else:
                self.counters["deltas_dropped"] += 1
            return
        price = msg.price
        if self._yes_scale and msg.side == "no":
            price = _ONE_DOLLAR - price
        book = live.book
        change = msg.delta
        if change < 0:
            negative = book.negative_levels
            book.apply_delta(msg.side, price, change)
            if book.negative_levels != negative:
                self._invalid_book(live, msg, at, commands, "a level below zero")
                return
        else:
            book.apply_delta(msg.side, price, change)
            other = book.no if msg.side == "yes" else book.yes
            if other and price + max(other) > _ONE_DOLLAR:
                self._invalid_book(live, msg, at, commands, "a crossed book")
                return
        # Frames from archives may lack sid/seq; the key columns cannot be NULL.
        seq = msg.seq if msg.seq is not None else 0
        sid = msg.sid if msg.sid is not None else 0
        session = self.session_id
        self.writer.add_delta((ticker, at, session, sid, seq, msg.side, price, msg.delta, msg.ts))
        self._deltas += 1
        if msg.ts is not None:  # _observe_lag, inlined: this runs for every delta
            lag = self._lag = at - msg.ts
            if self._lag_max is None or lag > self._lag_max:
                self._lag_max = lag
        live.deltas_since_snapshot += 1
        # Checkpoints bound the cost of rebuilding a book, not time: one after
        # every checkpoint_every_deltas deltas (book_at applies fewer), and one
        # at a market's first delta of a new UTC day, so that every day's
        # partition (or lake file) holds a baseline for each book that changed
        # in it. A quiet market writes none in between: on the storage bench's
        # mix, a checkpoint every 60 s cost 94% of the delta bytes.
        if live.deltas_since_snapshot >= self._every_deltas or at >= live.next_day:
            # The checkpoint shares the key of the delta just applied.
            yes, no = live.book.snapshot_levels()
            self.writer.add_snapshot(
                (ticker, at, session, sid, seq, CHECKPOINT, yes, no, None)
            )
            live.deltas_since_snapshot = 0
            live.next_day = _next_midnight(at)
            self.counters["checkpoints"] += 1

    def _invalid_book(self, live: LiveBook, msg, at: datetime, commands: list, why: str) -> None:
        """A delta that cannot be true: a message was lost. Gap and re-baseline."""
        ticker = msg.market_ticker
        self.counters["invalid_book"] += 1
        log.warning("pipeline: %s on %s after seq %s; asking for a snapshot", why, ticker, msg.seq)
        live.reliable = False
        self._open_gap(ticker, ORDERBOOK, INVALID_BOOK, live.sid, None, msg.seq,
                       self._gap_start(at))
        self._ask_snapshots(live.sid, (ticker,), at, commands)

    def _on_snapshot(self, msg: OrderbookSnapshotMsg, at: datetime) -> None:
        ticker = msg.market_ticker
        self._snapshot_asked.pop(ticker, None)
        sid = msg.sid if msg.sid is not None else 0
        if msg.sid is not None:
            self._sid_state(sid, ORDERBOOK).tickers.add(ticker)
        live = self.books.get(ticker)
        # "subscribe": the ticker's first baseline in this session.
        source = RESYNC if live is not None else SUBSCRIBE
        no = msg.no
        if self._yes_scale:
            no = [(_ONE_DOLLAR - price, size) for price, size in no]
        book = OrderBook.from_levels(msg.yes, no)
        if self._unchecked:
            check = self._unchecked.pop(ticker, None)
            if check is not None:
                self._check_book(ticker, live, book, check, at)
        self.books[ticker] = LiveBook(sid, book, True, 0, _next_midnight(at))
        yes, no = book.snapshot_levels()
        seq = msg.seq if msg.seq is not None else 0
        self.writer.add_snapshot((ticker, at, self.session_id, sid, seq, source, yes, no, None))
        self.counters["snapshots"] += 1
        if ticker in self._gapped or ticker not in self._baselined:
            # Ends this ticker's open gaps, including any left open by a
            # previous run of the collector that stopped uncleanly.
            self.writer.close_gap(ticker, ORDERBOOK, at)
            self._gapped.discard(ticker)
            self._baselined.add(ticker)

    # -- trades, lifecycle ---------------------------------------------------------

    def _on_trade(self, msg: TradeMsg, at: datetime) -> None:
        self.writer.add_trade(
            (
                msg.market_ticker, msg.ts, msg.trade_id, msg.yes_price, msg.no_price,
                msg.count, msg.taker_outcome_side, msg.taker_book_side, msg.taker_side,
                msg.is_block_trade, at, "ws",
            )
        )
        self.counters["trades"] += 1
        self._observe_lag(at - msg.ts)
        if msg.sid is not None:
            self._trade_last[msg.sid] = min(at, msg.ts)

    def _on_market_lifecycle(self, msg: MarketLifecycleMsg, at, commands) -> None:
        self._lifecycle_row(msg.market_ticker, msg.event_ticker or "", msg.event_type, at, msg.ts, msg)
        if msg.event_type == "created":
            commands.append(MarketCreated(msg.market_ticker, msg.event_ticker, msg.payload))
        elif msg.event_type == "determined":
            commands.append(
                MarketDetermined(msg.market_ticker, msg.result, msg.settlement_value, msg.ts)
            )
        elif msg.event_type == "settled":
            commands.append(MarketSettled(msg.market_ticker, msg.ts))

    def _on_event_lifecycle(self, msg: EventLifecycleMsg, at, commands) -> None:
        self._lifecycle_row("", msg.event_ticker, "event_created", at, None, msg)
        commands.append(EventCreated(msg.event_ticker, msg.series_ticker, msg.payload))

    def _on_event_fee_update(self, msg: EventFeeUpdateMsg, at, commands) -> None:
        self._lifecycle_row("", msg.event_ticker, "event_fee_update", at, None, msg)

    def _lifecycle_row(self, market_ticker, event_ticker, event_type, at, ts, msg) -> None:
        self.writer.add_lifecycle(
            (
                market_ticker, event_ticker, event_type, at, ts, self.session_id,
                msg.sid or 0, msg.seq or 0, msg.payload,
            )
        )
        self.counters["lifecycle"] += 1

    def _on_ticker(self, msg: TickerMsg, at, commands) -> None:
        # No seq and no table: a lossy summary stream, counted only.
        pass

    # -- subscriptions ------------------------------------------------------------

    def _on_subscribed(self, msg: SubscribedMsg, at, commands) -> None:
        self._dead_sids.discard(msg.sid)
        state = self.sequencer.subscribed(self.session_id, msg.sid, msg.channel)
        expected = self._expected.get(msg.id) if msg.id is not None else None
        if expected:
            for i, (channel, tickers) in enumerate(expected):
                if channel == msg.channel:
                    state.tickers.update(tickers)
                    del expected[i]
                    break
        if msg.channel == TRADE and self.trade_live_at is None:
            self.trade_live_at = at
        since = self._channel_break.pop(msg.channel, None)
        if since is not None:
            if msg.channel == TRADE:
                # Trades can be fetched back: the hole closes when they are.
                gaps, self._trade_break_gaps = tuple(self._trade_break_gaps), []
                commands.append(BackfillTrades(since - self._margin, at + self._margin, gaps=gaps))
            else:
                # The channel is live again: the break ends now.
                self.writer.close_gap("", msg.channel, at)

    def subscribe_refused(self, refused: dict[str, str]) -> None:
        """Kalshi refused these books ({ticker: why}): each is a hole from the
        last frame received until its first snapshot (the I/O layer retries)."""
        at = self._last_frame_at or self._stamp(None)
        if self.archive is not None:
            self.archive.subscribe_refused(self.session_id, refused)
        for ticker, why in sorted(refused.items()):
            if ticker in self._gapped:
                continue  # already in an open hole; its snapshot closes it
            log.warning("pipeline: book of %s not subscribed: %s", ticker, why)
            self._open_gap(ticker, ORDERBOOK, SUBSCRIBE_REFUSED, 0, None, None, at)
        self.counters["subscribe_refused"] += len(refused)

    def in_gap(self, ticker: str) -> bool:
        """Whether the ticker's book has an open hole (waiting for a snapshot)."""
        return ticker in self._gapped

    def market_opened(self, ticker: str, opened_at: datetime | None = None) -> None:
        """A market we will record has (or had, at `opened_at`) opened but its
        book is not subscribed yet: a `not_subscribed` hole until its first
        snapshot, so the time in between is never presented as complete."""
        if ticker in self._gapped or ticker in self.books:
            return
        at = opened_at if opened_at is not None else (self._last_frame_at or self._stamp(None))
        if self.archive is not None:
            self.archive.market_opened(self.session_id, ticker, at)
        self._open_gap(ticker, ORDERBOOK, NOT_SUBSCRIBED, 0, None, None, at)

    def market_missed(self, ticker: str, existed_from: datetime) -> None:
        """A market we would have recorded lived and ended while we were not
        looking (its `created` lost, its whole life inside a disconnect): a
        `not_subscribed` hole from when it existed, left open, since its book
        was never recorded. Session 0, so that listing it again (here or after
        a restart) writes the same row, which the writer stores once."""
        if self.archive is not None:
            self.archive.market_missed(self.session_id, ticker, existed_from)
        self.writer.open_gap(
            (ticker, ORDERBOOK, NOT_SUBSCRIBED, 0, None, None, None, existed_from, None, [])
        )
        self.counters["gap_rows"] += 1

    def _on_ok(self, msg: OkMsg, at, commands) -> None:
        if msg.subscriptions is not None:  # list_subscriptions
            for channel, sid in msg.subscriptions:
                self.sequencer.state(self.session_id, sid).channel = channel
            return
        if msg.sid is None or msg.market_tickers is None:
            return
        state = self._sid_state(msg.sid, None)
        now = set(msg.market_tickers)
        for ticker in state.tickers - now:
            live = self.books.get(ticker)
            if live is not None and live.sid == msg.sid:
                del self.books[ticker]
                self._uncheck(ticker, at)
        state.tickers = now

    def _on_unsubscribed(self, msg: UnsubscribedMsg, at, commands) -> None:
        if msg.sid is None:
            return
        self._drop_sid(msg.sid, at)

    def _on_error(self, msg: ErrorMsg, at, commands) -> None:
        self.counters[f"error_{msg.code}"] += 1
        state = self.sequencer.get(self.session_id, msg.sid) if msg.sid is not None else None
        if not msg.terminal or state is None:
            log.warning(
                "pipeline: Kalshi error %s on sid %s (command %s): %s %s",
                msg.code, msg.sid, msg.id, msg.text, msg.market_tickers or "",
            )
            return
        channel = state.channel
        log.error(
            "pipeline: terminal error %s on sid %s (%s, %d tickers): %s; resubscribing",
            msg.code, msg.sid, channel, len(state.tickers), msg.text,
        )
        if channel == ORDERBOOK:
            tickers = sorted(state.tickers | {t for t, b in self.books.items() if b.sid == msg.sid})
            for ticker in tickers:
                self._open_gap(ticker, ORDERBOOK, TERMINAL_ERROR, msg.sid, None, msg.seq, at)
            commands.append(Resubscribe(ORDERBOOK, tuple(tickers)))
        elif channel is not None:
            self._break_channel(channel, msg.sid, at, TERMINAL_ERROR, None, msg.seq)
            commands.append(Resubscribe(channel, tuple(sorted(state.tickers))))
        self._drop_sid(msg.sid, at)

    def _drop_sid(self, sid: int, at: datetime) -> None:
        self._dead_sids.add(sid)
        self.sequencer.forget(self.session_id, sid)
        for ticker in [t for t, b in self.books.items() if b.sid == sid]:
            del self.books[ticker]
            self._snapshot_asked.pop(ticker, None)
            self._uncheck(ticker, at)
        self._trade_last.pop(sid, None)

    # -- gaps ------------------------------------------------------------------------

    def _on_gap(self, msg, expected: int, received: int, at: datetime, commands: list) -> None:
        hint = _CHANNEL_OF.get(type(msg))
        if type(msg) is MarketLifecycleMsg:
            hint = msg.type  # market_lifecycle_v2 or multivariate_market_lifecycle
        ticker = msg.market_ticker if type(msg) in (OrderbookDeltaMsg, OrderbookSnapshotMsg) else None
        self._sid_gap(msg.sid, hint, msg, expected, received, at, commands, ticker)

    def _sid_gap(self, sid, hint, msg, expected, received, at, commands, ticker) -> None:
        """Numbers `expected`..`received - 1` of `sid` are lost; `msg` (if
        parsed) is the frame that revealed it, carrying `ticker` (if a book)."""
        self.counters["gaps"] += 1
        state = self._sid_state(sid, hint)
        channel = state.channel
        start = self._gap_start(at)
        log.warning(
            "pipeline: gap on sid %s (%s): expected seq %s, got %s; %d tickers",
            sid, channel, expected, received, len(state.tickers),
        )
        if channel == ORDERBOOK:
            if ticker is not None:
                state.tickers.add(ticker)
            tickers = set(state.tickers)
            tickers.update(t for t, b in self.books.items() if b.sid == sid)
            ticker_list = sorted(tickers)
            for ticker in ticker_list:
                live = self.books.get(ticker)
                if live is not None and not live.reliable:
                    continue  # already in an open gap, snapshot already asked for
                if live is None:
                    self.books[ticker] = LiveBook(sid, None, False)
                else:
                    live.reliable = False
                self._open_gap(ticker, ORDERBOOK, SEQ_GAP, sid, expected, received, start)
            # Every unreliable ticker of the sid needs a snapshot; one request
            # per market is outstanding at a time (tick() asks again for the
            # unanswered). A snapshot in this very frame re-baselines its
            # ticker without asking.
            own = ticker if type(msg) is OrderbookSnapshotMsg else None
            wanted = tuple(
                t for t in ticker_list if t != own and not self.books[t].reliable
            )
            if wanted:
                self._ask_snapshots(sid, wanted, at, commands)
        elif channel == TRADE:
            since = self._trade_last.get(sid, self._session_started or at)
            # Open until its backfill has succeeded.
            key = self._open_gap("", TRADE, SEQ_GAP, sid, expected, received, start)
            until = max(at, msg.ts) if type(msg) is TradeMsg else at
            commands.append(BackfillTrades(since - self._margin, until + self._margin, gaps=(key,)))
        else:
            # Lifecycle (or an unknown channel): recorded; the stream goes on.
            # The catalog is listed again over REST (collector/catalog.py).
            self._open_gap("", channel or "", SEQ_GAP, sid, expected, received, start,
                           recovered_at=at)
            if self.on_lifecycle_gap is not None:
                self.on_lifecycle_gap()

    def _on_uncertain(self, msg, expected: int, received: int, at: datetime, commands: list) -> None:
        """A book frame skipped exactly reply numbers before the connection's
        convention is proven (collector/sequencer.py): the replies used them
        up, or the frame a reply announced was lost. Every book of the sid is
        checked against a fresh snapshot (_check_book) instead of being
        presented as a hole it almost never is."""
        sid = msg.sid
        state = self._sid_state(sid, ORDERBOOK)
        self.counters["reply_skips_checked"] += 1
        start = self._gap_start(at)
        log.info(
            "pipeline: sid %s skipped reply seq %s..%s; checking its books against snapshots",
            sid, expected, received - 1,
        )
        own = msg.market_ticker if type(msg) is OrderbookSnapshotMsg else None
        check = (start, sid, expected, received)
        wanted = []
        for ticker, live in self.books.items():
            if live.sid == sid and live.reliable:
                self._unchecked.setdefault(ticker, check)
                if ticker != own:
                    wanted.append(ticker)
        # A confirmed ticker with no book yet may have lost its first snapshot.
        wanted.extend(t for t in state.tickers if t not in self.books and t != own)
        if wanted:
            self._ask_snapshots(sid, sorted(wanted), at, commands)

    def _check_book(self, ticker: str, live, book: OrderBook, check: tuple, at: datetime) -> None:
        """`book`, Kalshi's snapshot, against `live`, ours, after an UNCERTAIN
        skip: equal, nothing was lost; different, a hole since the skip."""
        if live is not None and live.reliable and live.book == book:
            self.counters["reply_skip_books_clean"] += 1
            return
        since, sid, expected, received = check
        self.counters["reply_skip_books_lost"] += 1
        log.warning(
            "pipeline: book of %s differs from its snapshot after sid %s skipped seq %s..%s; "
            "a frame was lost there (replies announce numbers on this connection)",
            ticker, sid, expected, received - 1,
        )
        self.sequencer.prove_peek(self.session_id)
        self._open_gap(ticker, ORDERBOOK, SEQ_GAP, sid, expected, received, since, recovered_at=at)

    def _uncheck(self, ticker: str, at: datetime) -> None:
        """The book leaves before its check: the time since the skip is unproven."""
        check = self._unchecked.pop(ticker, None)
        if check is not None:
            since, sid, expected, received = check
            self._open_gap(ticker, ORDERBOOK, SEQ_GAP, sid, expected, received, since,
                           recovered_at=at)

    def _break_channel(self, channel, sid, at, reason, expected, received) -> None:
        """A channel-wide break (trade / lifecycle) open until it is resubscribed."""
        since = self._trade_last.get(sid, self._session_started or at) if channel == TRADE else at
        self._channel_break.setdefault(channel, since)
        key = self._open_gap("", channel, reason, sid, expected, received, at)
        if channel == TRADE:
            self._trade_break_gaps.append(key)

    def _open_gap(self, ticker, channel, reason, sid, expected, received, at, recovered_at=None) -> tuple:
        """Record a gap; return its key (ticker, channel, session_id, detected_at).

        `tickers_on_sid` is written empty: the books one sid gap hit are the
        rows sharing its (session_id, sid, detected_at). A list in every row
        cost a 1,000-market sid a million ticker strings per gap.

        A book still waiting for its check after an UNCERTAIN skip was never
        proven whole since that skip: its hole begins there.
        """
        if self._unchecked and ticker and recovered_at is None:
            check = self._unchecked.pop(ticker, None)
            if check is not None and check[0] < at:
                at = check[0]
        self.writer.open_gap(
            (
                ticker, channel, reason, self.session_id or 0, sid, expected, received, at,
                recovered_at, [],
            )
        )
        if ticker and channel == ORDERBOOK and recovered_at is None:
            self._gapped.add(ticker)
        self.counters["gap_rows"] += 1
        return (ticker, channel, self.session_id or 0, at)

    # -- helpers ---------------------------------------------------------------------

    def _sid_state(self, sid: int, channel: str | None) -> SidState:
        state = self.sequencer.state(self.session_id, sid)
        if state.channel is None and channel is not None:
            state.channel = channel
        return state

    @property
    def _last_received(self) -> datetime | None:
        return self.state.last_received

    @property
    def last_frame_at(self) -> datetime | None:
        """When this connection's latest frame was received."""
        return self._last_frame_at

    def _malformed(self, reason: str, raw) -> None:
        self.counters["malformed"] += 1
        text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        limit = self.config.malformed_log_chars
        if len(text) > limit:
            text = text[:limit] + f"...({len(text)} chars)"
        log.warning("pipeline: malformed frame (%s): %r", reason, text)

    def _observe_lag(self, lag: timedelta) -> None:
        self._lag = lag
        if self._lag_max is None or lag > self._lag_max:
            self._lag_max = lag

    def stats(self) -> dict:
        """Counters since start; lag (received_at - exchange ts) last and max since last call."""
        result = dict(self.counters)
        result["frames"] = self._frames
        result["deltas"] = self._deltas
        result["by_type"] = dict(self._by_type)
        result["books"] = len(self.books)
        result["books_unreliable"] = sum(1 for b in self.books.values() if not b.reliable)
        result["lag_seconds"] = self._lag.total_seconds() if self._lag is not None else None
        result["lag_max_seconds"] = (
            self._lag_max.total_seconds() if self._lag_max is not None else None
        )
        self._lag_max = None
        writer_stats = getattr(self.writer, "stats", None)
        if writer_stats is not None:
            result["writer"] = writer_stats()
        return result


def _salvage(raw) -> tuple[int | None, int | None, str | None, str | None]:
    """(sid, seq, type, market_ticker) of an unparseable frame, when readable."""
    try:
        frame = json.loads(raw)
    except (ValueError, TypeError):
        return None, None, None, None
    if not isinstance(frame, dict):
        return None, None, None, None
    sid, seq, kind = frame.get("sid"), frame.get("seq"), frame.get("type")
    msg = frame.get("msg")
    ticker = msg.get("market_ticker") if isinstance(msg, dict) else None
    return (
        sid if type(sid) is int else None,
        seq if type(seq) is int else None,
        kind if isinstance(kind, str) else None,
        ticker if isinstance(ticker, str) else None,
    )


_HANDLERS = {
    MarketLifecycleMsg: Pipeline._on_market_lifecycle,
    EventLifecycleMsg: Pipeline._on_event_lifecycle,
    EventFeeUpdateMsg: Pipeline._on_event_fee_update,
    TickerMsg: Pipeline._on_ticker,
    SubscribedMsg: Pipeline._on_subscribed,
    OkMsg: Pipeline._on_ok,
    UnsubscribedMsg: Pipeline._on_unsubscribed,
    ErrorMsg: Pipeline._on_error,
}
