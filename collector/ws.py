"""The WebSocket side of the collector: connect, subscribe, feed the pipeline.

`KalshiFeed.run()` keeps one signed connection to Kalshi's market-data
WebSocket alive until told to stop: on every connect it starts a pipeline
session and subscribes `market_lifecycle_v2`, `trade` (all markets) and
`orderbook_delta` for the chosen markets (first batch by `subscribe`, the
rest by `update_subscription add_markets` on that sid, `use_yes_price`
always sent explicitly); it hands every frame to `Pipeline.handle()` and
carries out the commands that come back. WebSocket-bound commands (fresh
snapshots, resubscribes, adding and removing markets) are sent at once;
those that need REST or the database go to the `Actions` worker so the
reader never waits on them. When the connection drops, `Pipeline.end_session()`
records the hole, and the loop reconnects with exponential backoff and
jitter (reset after a connection that worked) unless the error is fatal
(`is_retryable`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from collector import commands as cmd
from kalshi import auth
from collector.backoff import backoff_delays

logger = logging.getLogger(__name__)

LIFECYCLE_CHANNEL = "market_lifecycle_v2"
TRADE_CHANNEL = "trade"
BOOK_CHANNEL = "orderbook_delta"

# Kalshi pings every 10 s; our own pings catch a half-open socket.
PING_INTERVAL_S = 10.0
PING_TIMEOUT_S = 20.0
OPEN_TIMEOUT_S = 15.0
MAX_FRAME_BYTES = 64 * 1024 * 1024  # a snapshot of a deep book is large
MAX_QUEUED_FRAMES = 4096  # frames websockets buffers before it stops reading
SID_REPLY_TIMEOUT_S = 30.0  # how long a subscribe may wait for its `subscribed`
# A connection that stayed up this long "worked": the next failure starts
# the backoff from the beginning again.
GOOD_CONNECTION_S = 30.0
# A settled market in a gap keeps its subscription this long for its snapshot.
RETIRE_WAIT_S = 30.0
RETIRE_POLL_S = 0.1
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """Whether reconnecting after `exc` can help.

    Retryable: the connection closed (any close code: Kalshi drops sockets in
    maintenance windows and on overload); network errors (`OSError`: refused,
    reset, unreachable, DNS); timeouts (opening handshake, pings); a handshake
    that broke off (`InvalidMessage`, e.g. EOF); and HTTP 429/500/502/503/504
    on the upgrade request.
    Fatal: any other HTTP status on the upgrade (401/403: bad key or
    signature, 404: wrong URL), any other handshake error (the URL points at
    something that is not a WebSocket server), a malformed URL, and everything
    else (bugs must surface, not loop).
    """
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code in RETRYABLE_HTTP_STATUSES
    return isinstance(exc, (ConnectionClosed, OSError, TimeoutError, InvalidMessage))


# A control reply has one of these types; a cheap test before parsing.
_CONTROL_MARKERS = ('"subscribed"', '"ok"', '"error"', '"unsubscribed"')
_CONTROL_MARKERS_BYTES = tuple(m.encode() for m in _CONTROL_MARKERS)


@dataclass
class _Subscriptions:
    """What this connection subscribed: sids by channel, tickers by book sid.

    Learnt from our own commands and the server's `subscribed`/`ok` replies,
    which are cheap to pick out of the stream.
    """

    pending: dict[int, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    waiting: dict[int, asyncio.Future] = field(default_factory=dict)
    channel_of_sid: dict[int, str] = field(default_factory=dict)
    book_tickers: dict[int, set[str]] = field(default_factory=dict)

    def book_sid_of(self, ticker: str) -> int | None:
        for sid, tickers in self.book_tickers.items():
            if ticker in tickers:
                return sid
        return None

    def book_sid(self) -> int | None:
        """The orderbook sid with the fewest markets (where new ones go)."""
        if not self.book_tickers:
            return None
        return min(self.book_tickers, key=lambda sid: len(self.book_tickers[sid]))

    def observe(self, raw: str | bytes) -> None:
        """Learn from control replies; every other frame passes untouched."""
        markers = _CONTROL_MARKERS_BYTES if isinstance(raw, bytes) else _CONTROL_MARKERS
        if not any(marker in raw for marker in markers):
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            return  # the pipeline logs and counts malformed frames
        if not isinstance(frame, dict):
            return
        kind, msg, command_id = frame.get("type"), frame.get("msg"), frame.get("id")
        if kind == "subscribed" and isinstance(msg, dict):
            sid, channel = msg.get("sid"), msg.get("channel")
            if not isinstance(sid, int):
                return
            self.channel_of_sid[sid] = channel
            _, tickers = self.pending.pop(command_id, (channel, ()))
            if channel == BOOK_CHANNEL:
                self.book_tickers.setdefault(sid, set()).update(tickers)
            future = self.waiting.pop(command_id, None)
            if future is not None and not future.done():
                future.set_result(sid)
        elif kind == "ok" and isinstance(msg, dict):
            sid = frame.get("sid")
            if sid in self.book_tickers and isinstance(msg.get("market_tickers"), list):
                # An update's `ok` lists the sid's complete set after the change.
                self.book_tickers[sid] = set(msg["market_tickers"])
        elif kind == "unsubscribed":
            self.book_tickers.pop(frame.get("sid"), None)
            self.channel_of_sid.pop(frame.get("sid"), None)
        elif kind == "error":
            pending = self.pending.pop(command_id, None)
            future = self.waiting.pop(command_id, None)
            if future is not None and not future.done():
                future.set_exception(RuntimeError(f"subscribe refused: {msg}"))
            if pending is not None:  # the pipeline logs every error; this one refused a subscribe
                logger.warning("ws subscribe refused id=%s msg=%s command=%s", command_id, msg, pending)
            sid = frame.get("sid")
            if isinstance(msg, dict) and msg.get("code") in (10, 25) and sid is not None:
                self.book_tickers.pop(sid, None)  # the subscription is gone


class Session:
    """One live connection: numbered commands and its subscriptions."""

    def __init__(self, ws: ClientConnection, pipeline, config):
        self.ws = ws
        self.pipeline = pipeline
        self.config = config
        self.subs = _Subscriptions()
        self._ids = itertools.count(1)
        self._book_lock = asyncio.Lock()
        self.commands_sent = 0

    async def send(self, command: str, params: dict | None = None) -> int:
        return await self._send(next(self._ids), command, params)

    async def _send(self, command_id: int, command: str, params: dict | None) -> int:
        frame = {"id": command_id, "cmd": command}
        if params is not None:
            frame["params"] = params
        await self.ws.send(json.dumps(frame))
        self.commands_sent += 1
        return command_id

    async def subscribe(self, channels: list[str], tickers: list[str] | None = None) -> asyncio.Future | None:
        """Send one `subscribe` (after telling the pipeline what it asks for).

        For the book channel, returns a future that resolves to the new sid.
        """
        command_id = next(self._ids)
        params: dict = {"channels": channels}
        if tickers:
            params["market_tickers"] = tickers
        if BOOK_CHANNEL in channels:
            params["use_yes_price"] = self.config.use_yes_price
        for channel in channels:
            self.pipeline.expect_subscription(command_id, channel, list(tickers or ()))
        future = None
        if BOOK_CHANNEL in channels:
            self.subs.pending[command_id] = (BOOK_CHANNEL, tuple(tickers or ()))
            future = self.subs.waiting[command_id] = asyncio.get_running_loop().create_future()
            # Nobody may wait for it (a resubscribe): never warn about that.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        await self._send(command_id, "subscribe", params)
        return future

    async def subscribe_books(self, tickers: list[str]) -> None:
        """Subscribe `tickers`' books: add them to a book sid, or open one first.

        One sid carries them all (Kalshi merges a second subscribe of a
        channel into the first anyway); batches keep each command small.
        """
        batch = self.config.subscribe_batch
        async with self._book_lock:
            tickers = [t for t in tickers if self.subs.book_sid_of(t) is None]
            if not tickers:
                return
            for i in range(0, len(tickers), batch):
                chunk = tickers[i : i + batch]
                sid = self.subs.book_sid()
                if sid is None:
                    # No book subscription (yet, or Kalshi ended it): open one
                    # and wait for its sid, which the next batches join.
                    future = await self.subscribe([BOOK_CHANNEL], chunk)
                    await asyncio.wait_for(asyncio.shield(future), SID_REPLY_TIMEOUT_S)
                    continue
                self.subs.book_tickers[sid].update(chunk)
                await self.send("update_subscription", {
                    "sid": sid, "market_tickers": chunk, "action": "add_markets",
                })

    async def unsubscribe_books(self, tickers: list[str]) -> None:
        """Stop the books of `tickers` (settled markets) with `delete_markets`."""
        by_sid: dict[int, list[str]] = {}
        for ticker in tickers:
            sid = self.subs.book_sid_of(ticker)
            if sid is not None:
                by_sid.setdefault(sid, []).append(ticker)
        for sid, chunk in by_sid.items():
            self.subs.book_tickers[sid].difference_update(chunk)
            await self.send("update_subscription", {
                "sids": [sid], "market_tickers": chunk, "action": "delete_markets",
            })

    async def request_snapshots(self, sid: int, tickers: list[str]) -> None:
        if sid not in self.subs.book_tickers:
            # Kalshi ended that sid (error 10/25): the resubscribe that
            # follows brings fresh snapshots; asking it would get error 7.
            return
        batch = self.config.subscribe_batch
        for start in range(0, len(tickers), batch):
            await self.send("update_subscription", {
                "sid": sid, "market_tickers": tickers[start : start + batch], "action": "get_snapshot",
            })


class KalshiFeed:
    """The reconnecting WebSocket reader. See the module docstring."""

    def __init__(self, *, url: str, pipeline, config, actions, markets: set[str], selection,
                 key_id: str = "", private_key=None):
        self.url = url
        self.pipeline = pipeline
        self.config = config
        self.actions = actions
        self.markets = markets  # the books to record; shared with Actions
        self.selection = selection
        self._key_id = key_id
        self._private_key = private_key
        self._path = urlsplit(url).path or "/"
        self.session: Session | None = None
        self.connects = 0
        self.reconnects = 0
        self.frames = 0
        # Side tasks (subscribing, retiring markets): asyncio keeps only weak
        # references to tasks, so one nobody holds may vanish mid-way.
        self._background: set[asyncio.Task] = set()
        actions.feed = self

    def _headers(self) -> dict[str, str]:
        if not (self._key_id and self._private_key):
            return {}
        return auth.signed_headers(self._key_id, self._private_key, "GET", self._path)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, read and reconnect until `stop` is set (or a fatal error)."""
        delays = None
        while not stop.is_set():
            started = time.monotonic()
            reason = "closed"
            try:
                async with connect(
                    self.url,
                    additional_headers=self._headers(),
                    open_timeout=OPEN_TIMEOUT_S,
                    ping_interval=PING_INTERVAL_S,
                    ping_timeout=PING_TIMEOUT_S,
                    max_size=MAX_FRAME_BYTES,
                    max_queue=MAX_QUEUED_FRAMES,
                ) as ws:
                    await self._session(ws, stop)
            except Exception as exc:  # noqa: BLE001 - sorted by is_retryable
                if not is_retryable(exc):
                    logger.error("ws fatal error=%r url=%s", exc, self.url)
                    raise
                reason = f"{type(exc).__name__}: {exc}"
            if stop.is_set():
                return
            if delays is None or time.monotonic() - started >= GOOD_CONNECTION_S:
                delays = backoff_delays(
                    initial=self.config.backoff_initial,
                    factor=self.config.backoff_factor,
                    maximum=self.config.backoff_max,
                )
            delay = next(delays)
            self.reconnects += 1
            logger.info("ws reconnect reason=%r wait_s=%.2f reconnects=%d", reason, delay, self.reconnects)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        session_id = time.time_ns() // 1000
        self.pipeline.start_session(session_id)
        self.connects += 1
        session = self.session = Session(ws, self.pipeline, self.config)
        logger.info("ws connected url=%s session=%d markets=%d", self.url, session_id, len(self.markets))
        closer = asyncio.create_task(self._close_on(stop, ws))
        subscriber = asyncio.create_task(self._subscribe_all(session))
        try:
            async for raw in ws:
                self.frames += 1
                session.subs.observe(raw)
                for command in self.pipeline.handle(raw):
                    await self._execute(command, session)
        finally:
            self.session = None
            closer.cancel()
            subscriber.cancel()
            self.pipeline.end_session()
            logger.info("ws session_ended session=%d", session_id)

    @staticmethod
    async def _close_on(stop: asyncio.Event, ws: ClientConnection) -> None:
        await stop.wait()
        await ws.close()

    async def _subscribe_all(self, session: Session) -> None:
        try:
            await session.subscribe([LIFECYCLE_CHANNEL, TRADE_CHANNEL])
            await session.subscribe_books(sorted(self.markets))
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - a connection we cannot subscribe on is useless
            logger.error("ws subscribe failed error=%r; reconnecting", exc)
            await session.ws.close(code=1011, reason="subscribe failed")

    # -- commands from the pipeline ------------------------------------------

    async def _execute(self, command, session: Session) -> None:
        if isinstance(command, cmd.RequestSnapshots):
            await session.request_snapshots(command.sid, list(command.market_tickers))
        elif isinstance(command, cmd.Resubscribe):
            if command.channel == BOOK_CHANNEL:
                # The old sid is gone; the books go to a live sid or a new
                # one. In a task: opening a sid waits for a reply this loop reads.
                tickers = [t for t in command.market_tickers if t in self.markets]
                self._spawn(session.subscribe_books(tickers))
            else:
                await session.subscribe([command.channel])
        elif isinstance(command, cmd.MarketCreated):
            # Subscribe at once when the ticker alone decides; otherwise the
            # market's series decides, which Actions looks up first.
            if self.selection.everything or command.market_ticker in self.selection.markets:
                await self.add_markets([command.market_ticker])
            self.actions.submit(command)
        elif isinstance(command, cmd.MarketSettled):
            self._spawn(self.retire_market(command.market_ticker))
            self.actions.submit(command)
        else:
            self.actions.submit(command)

    async def add_markets(self, tickers: list[str]) -> None:
        """Record these markets' books from now on (and after every reconnect)."""
        new = [t for t in tickers if t not in self.markets]
        self.markets.update(new)
        if new and self.session is not None:
            self._spawn(self.session.subscribe_books(new))

    async def retire_market(self, ticker: str) -> None:
        """Stop recording a settled market's book, once that book is whole.

        A settled market's book no longer changes, but if it is in a gap its
        fresh snapshot is on the way: unsubscribing now would leave the gap
        open forever, so wait for it (at most RETIRE_WAIT_S).
        """
        self.markets.discard(ticker)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETIRE_WAIT_S
        while loop.time() < deadline:
            live = self.pipeline.books.get(ticker)
            if live is None or live.reliable:
                break
            await asyncio.sleep(RETIRE_POLL_S)
        if self.session is not None:
            logger.info("ws unsubscribe settled market=%s", ticker)
            await self.session.unsubscribe_books([ticker])

    def _spawn(self, coro) -> None:
        """Run `coro` beside the reader (guarded), holding its task until it ends."""
        task = asyncio.create_task(self._guarded(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _guarded(coro) -> None:
        try:
            await coro
        except (ConnectionClosed, asyncio.CancelledError):
            pass  # the next connection subscribes everything again
        except Exception:  # noqa: BLE001 - logged, the feed goes on
            logger.exception("ws subscribe failed")
