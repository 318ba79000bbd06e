"""One WebSocket connection of the collector: connect, subscribe, feed the pipeline.

`KalshiFeed.run()` keeps one signed connection to Kalshi's market-data
WebSocket alive until told to stop, and records the books of its share of
the markets (`markets`). The collector opens as many as Kalshi's caps need
(collector/connections.py); the first, the *primary*, also carries the
lifecycle channels and `trade`. On every connect it starts its pipeline's
session; the primary subscribes lifecycle and `trade` first and lets the
catalog list markets again (collector/catalog.py: what was created while we
were away is found); then the books are subscribed through the subscription
manager (collector/subscriptions.py: commands tracked by id until Kalshi
answers, paced, spread over subscriptions under the cap, refused markets
returned). A refused market gets a `subscribe_refused` hole and is tried
again with backoff; one refused because the connection is full (26) is
handed back to the connections, which place it on another. Every frame goes
to `Pipeline.handle()`; the commands that come back are carried out
(WebSocket ones at once, REST/database ones by the `Actions` worker). Twice
a second the session also asks the pipeline for overdue snapshot requests
and retries refused markets that are due.

When the connection drops, `Pipeline.end_session()` records the hole (from
the last frame received) and the loop reconnects. An outage ends without
notice, so the wait between attempts never exceeds `reconnect_probe_s` for
network errors, closes and 5xx (each attempt is the probe); only 429 follows
the full exponential backoff. A 401/403 on the upgrade (key, signature or
clock) is logged as an error and retried every `auth_retry_s`: it is often a
transient problem on Kalshi's side and a collector that exits records nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from collector import commands as cmd
from collector.backoff import backoff_delays
from collector.subscriptions import TOO_MANY_MARKETS, Subscriptions
from kalshi import auth

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
# A connection that stayed up this long "worked": the next failure starts
# the backoff from the beginning again.
GOOD_CONNECTION_S = 30.0
# A settled market in a gap keeps its subscription this long for its snapshot.
RETIRE_WAIT_S = 30.0
RETIRE_POLL_S = 0.1
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_HTTP_STATUSES = frozenset({401, 403})
HOUSEKEEPING_EVERY_S = 0.5
MULTIVARIATE_LIFECYCLE_CHANNEL = "multivariate_market_lifecycle"


def is_retryable(exc: BaseException) -> bool:
    """Whether reconnecting after `exc` can help.

    Retryable: the connection closed (any close code: Kalshi drops sockets in
    maintenance windows and on overload); network errors (`OSError`: refused,
    reset, unreachable, DNS); timeouts (opening handshake, pings); a handshake
    that broke off (`InvalidMessage`, e.g. EOF); and HTTP 429/500/502/503/504
    on the upgrade request.
    401/403 are retried too, slowly and loudly (see the module docstring).
    Fatal: any other HTTP status on the upgrade (404: wrong URL), any other
    handshake error (the URL points at
    something that is not a WebSocket server), a malformed URL, and everything
    else (bugs must surface, not loop).
    """
    if isinstance(exc, InvalidStatus):
        code = exc.response.status_code
        return code in RETRYABLE_HTTP_STATUSES or code in AUTH_HTTP_STATUSES
    return isinstance(exc, (ConnectionClosed, OSError, TimeoutError, InvalidMessage))


class Session:
    """One live connection and its subscription manager."""

    def __init__(self, ws: ClientConnection, pipeline, config):
        self.ws = ws
        self.subs = Subscriptions(ws.send, config, pipeline)


_last_session_id = 0


def new_session_id() -> int:
    """A connection's session id: its connect time in µs, unique in this process
    (several connections may open in the same microsecond)."""
    global _last_session_id
    _last_session_id = max(time.time_ns() // 1000, _last_session_id + 1)
    return _last_session_id


class KalshiFeed:
    """The reconnecting WebSocket reader. See the module docstring.

    `connections` is what decides which markets are recorded and where
    (collector/connections.py); a feed on its own (tests, benchmarks) is its
    own and records every market it is given.
    """

    def __init__(self, *, url: str, pipeline, config, actions, markets: set[str], selection,
                 key_id: str = "", private_key=None, shard=None, catalog=None,
                 connections=None, primary: bool = True, name: str = "ws"):
        self.url = url
        self.pipeline = pipeline
        self.config = config
        self.actions = actions
        self.markets = markets  # the books this connection records
        self.selection = selection
        self._key_id = key_id
        self._private_key = private_key
        self._path = urlsplit(url).path or "/"
        self.session: Session | None = None
        self.connects = 0
        self.reconnects = 0
        self.frames = 0
        self.auth_refusals = 0
        self.shard = shard  # collector.catalog.Shard or None
        self.catalog = catalog  # collector.catalog.Catalog or None (tests)
        # Markets Kalshi refused: ticker -> (monotonic time of the next try, delay).
        self.refused: dict[str, tuple[float, float]] = {}
        # Side tasks (subscribing, retiring markets): asyncio keeps only weak
        # references to tasks, so one nobody holds may vanish mid-way.
        self._background: set[asyncio.Task] = set()
        self.primary = primary  # carries lifecycle and trade, relists on connect
        self.name = name  # in log lines
        self.connections = connections if connections is not None else self
        if connections is None:
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
            status = None
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
                if isinstance(exc, InvalidStatus):
                    status = exc.response.status_code
            if stop.is_set():
                return
            if delays is None or time.monotonic() - started >= GOOD_CONNECTION_S:
                delays = backoff_delays(
                    initial=self.config.backoff_initial,
                    factor=self.config.backoff_factor,
                    maximum=self.config.backoff_max,
                )
            delay = next(delays)
            if status in AUTH_HTTP_STATUSES:
                self.auth_refusals += 1
                delay = self.config.auth_retry_s
                logger.error("ws handshake REFUSED status=%s (key, signature or clock?) url=%s; "
                             "nothing is recorded until it is accepted; again in %.0fs",
                             status, self.url, delay)
            elif status != 429:
                # The exchange may be back any moment: probe, do not sleep it out.
                delay = min(delay, self.config.reconnect_probe_s)
            self.reconnects += 1
            logger.info("ws reconnect reason=%r wait_s=%.2f reconnects=%d", reason, delay, self.reconnects)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        session_id = new_session_id()
        self.pipeline.start_session(session_id)
        self.connects += 1
        session = self.session = Session(ws, self.pipeline, self.config)
        logger.info("ws connected connection=%s url=%s session=%d markets=%d",
                    self.name, self.url, session_id, len(self.markets))
        closer = asyncio.create_task(self._close_on(stop, ws))
        subscriber = asyncio.create_task(self._subscribe_all(session))
        housekeeper = asyncio.create_task(self._housekeeping(session))
        try:
            async for raw in ws:
                self.frames += 1
                session.subs.observe(raw)
                for command in self.pipeline.handle(raw):
                    await self._execute(command, session)
        finally:
            self.session = None
            session.subs.close()
            for task in (closer, subscriber, housekeeper):
                task.cancel()
            self.pipeline.end_session()
            logger.info("ws session_ended connection=%s session=%d", self.name, session_id)

    @staticmethod
    async def _close_on(stop: asyncio.Event, ws: ClientConnection) -> None:
        await stop.wait()
        await ws.close()

    def _lifecycle_channels(self) -> list[str]:
        channels = [LIFECYCLE_CHANNEL]
        if getattr(self.config, "combos", "exclude") == "include":
            channels.append(MULTIVARIATE_LIFECYCLE_CHANNEL)
        return channels

    async def _subscribe_all(self, session: Session) -> None:
        """Lifecycle first (nothing created from now on is missed), then books, then list."""
        try:
            if self.primary:
                await session.subs.call(
                    "subscribe", {"channels": [*self._lifecycle_channels(), TRADE_CHANNEL]},
                    channels=[*self._lifecycle_channels(), TRADE_CHANNEL],
                )
            # The books we know first (the sooner their hole closes), then the
            # listing finds what was created meanwhile and subscribes it too.
            await self._subscribe_books(session, sorted(self.markets))
            if self.primary and self.catalog is not None:
                await self.catalog.reconcile_on_connect()
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - a connection we cannot subscribe on is useless
            logger.error("ws subscribe failed error=%r; reconnecting", exc)
            await session.ws.close(code=1011, reason="subscribe failed")

    async def _subscribe_books(self, session: Session, tickers: list[str]) -> None:
        """Subscribe books; record and schedule a retry for those Kalshi refused."""
        tickers = [t for t in tickers if t in self.markets]
        if not tickers:
            return
        try:
            refused = await session.subs.subscribe_books(tickers, self.config.use_yes_price)
        except (ConnectionClosed, asyncio.CancelledError):
            raise  # the next connection subscribes every market again
        except Exception as exc:  # noqa: BLE001 - never a market left unsubscribed with no hole
            logger.exception("ws subscribe failed markets=%s", ",".join(tickers[:5]))
            refused = {ticker: f"subscribe failed: {exc!r}" for ticker in tickers}
        now = time.monotonic()
        for ticker in tickers:
            if ticker not in refused:
                self.refused.pop(ticker, None)
        full = [t for t, why in refused.items() if why.startswith(f"error {TOO_MANY_MARKETS}:")]
        if full and self.connections is not self and session.subs.subscribed_books():
            # This connection is full: the markets go to another one.
            await self.connections.overflow(self, full, len(session.subs.subscribed_books()))
            refused = {t: why for t, why in refused.items() if t not in full}
        if refused:
            self.pipeline.subscribe_refused(refused)
            for ticker in refused:
                _, delay = self.refused.get(ticker, (0.0, self.config.refused_retry_initial / 2))
                delay = min(delay * 2, self.config.refused_retry_max)
                self.refused[ticker] = (now + delay, delay)

    async def _housekeeping(self, session: Session) -> None:
        """Overdue snapshot requests; refused markets due for another try."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY_S)
            for command in self.pipeline.tick():
                await self._execute(command, session)
            now = time.monotonic()
            due = sorted(t for t, (at, _) in self.refused.items() if at <= now and t in self.markets)
            if due:
                self._spawn(self._subscribe_books(session, due))
            for ticker in [t for t in self.refused if t not in self.markets]:
                del self.refused[ticker]

    # -- commands from the pipeline ------------------------------------------

    async def _execute(self, command, session: Session) -> None:
        if isinstance(command, cmd.RequestSnapshots):
            self._spawn(session.subs.request_snapshots(
                command.sid, list(command.market_tickers), self.config.subscribe_batch))
        elif isinstance(command, cmd.Resubscribe):
            if command.channel == BOOK_CHANNEL:
                # The old sid is gone; the books go to a live sid or a new
                # one. In a task: it waits for replies this loop reads.
                self._spawn(self._subscribe_books(session, list(command.market_tickers)))
            else:
                self._spawn(session.subs.call("subscribe", {"channels": [command.channel]},
                                              channels=[command.channel]))
        elif isinstance(command, cmd.MarketCreated):
            # Subscribe at once when the ticker alone decides; otherwise the
            # market's series decides, which Actions looks up first.
            recording = self.connections
            if recording.wanted(command.market_ticker, command.event_ticker) and (
                self.selection.everything or command.market_ticker in self.selection.markets
            ):
                recording.market_opened(command.market_ticker, self.pipeline.last_frame_at)
                await recording.add_markets([command.market_ticker])
            self.actions.submit(command)
        elif isinstance(command, cmd.MarketSettled):
            self.connections.retire(command.market_ticker)
            self.actions.submit(command)
        else:
            self.actions.submit(command)

    def wanted(self, market_ticker: str, event_ticker: str | None) -> bool:
        """This process's share (`--shard`); everything without a shard."""
        return self.shard is None or self.shard.owns(event_ticker or "", market_ticker)

    def market_opened(self, ticker: str, at=None) -> None:
        """A market to record opened (at `at`): a hole until its first snapshot."""
        self.pipeline.market_opened(ticker, at)

    def market_missed(self, ticker: str, existed_from) -> None:
        self.pipeline.market_missed(ticker, existed_from)

    def retire(self, ticker: str) -> None:
        """Retire a settled market's book, beside the reader."""
        self._spawn(self.retire_market(ticker))

    async def add_markets(self, tickers: list[str]) -> None:
        """Record these markets' books from now on (and after every reconnect)."""
        new = [t for t in tickers if t not in self.markets]
        self.markets.update(new)
        self.subscribe_now(new)

    def subscribe_now(self, tickers) -> None:
        """Subscribe these books (already in `markets`) at once when connected;
        otherwise the next connect does."""
        if tickers and self.session is not None:
            self._spawn(self._subscribe_books(self.session, list(tickers)))

    async def retire_market(self, ticker: str) -> None:
        """Stop recording a settled market's book, once that book is whole.

        A settled market's book no longer changes, but if it is in a gap its
        fresh snapshot is on the way: unsubscribing now would leave the gap
        open forever, so wait for it (at most RETIRE_WAIT_S).
        """
        self.refused.pop(ticker, None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETIRE_WAIT_S
        while loop.time() < deadline:
            # Still in self.markets meanwhile: a resubscribe after a terminal
            # error includes it, so its open hole can still be closed.
            live = self.pipeline.books.get(ticker)
            if live is not None and live.reliable:
                break
            if live is None and not self.pipeline.in_gap(ticker):
                break
            await asyncio.sleep(RETIRE_POLL_S)
        self.markets.discard(ticker)
        if self.session is not None:
            logger.info("ws unsubscribe settled connection=%s market=%s", self.name, ticker)
            await self.session.subs.unsubscribe_books([ticker])

    def _spawn(self, coro) -> None:
        """Run `coro` beside the reader (guarded), holding its task until it ends."""
        task = asyncio.create_task(guarded(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def guarded(coro) -> None:
    """Run a side task of the feed: a closed connection ends it quietly, other errors are logged."""
    try:
        await coro
    except (ConnectionClosed, asyncio.CancelledError):
        pass  # the next connection subscribes everything again
    except Exception:  # noqa: BLE001 - logged, the feed goes on
        logger.exception("ws command failed")
