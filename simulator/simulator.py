"""The simulator as tests and the `kalshi_sim` command use it.

    sim = Simulator(seed=7, markets=20, faults=FaultConfig(drop_rate=0.01))
    urls = await sim.start(host="127.0.0.1", port=0)   # urls.rest, urls.ws
    sim.pause(); sim.step(100)                            # deterministic, no timers
    await sim.drain()                                     # everything queued is sent
    sim.true_book(ticker)                                 # markets.book.OrderBook: ground truth
    await sim.stop()

It owns one Exchange (the truth) and the open connections. Each exchange
step is handed to every connection synchronously, so what a client is sent
is always a faithful (or deliberately faulted) rendering of the truth.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from kalshi import auth
from markets.book import OrderBook

from .catalog import Market, Trade
from .config import REST_PREFIX, WS_PATH, SimulatorConfig
from .events import BookDelta, ExchangeEvent, MarketCreated
from .exchange import EngineConfig, Exchange
from .faults import FaultConfig
from .ratelimit import RateLimiter
from .server import Connection, build_app
from kalshi.wire import LEGACY

# How often the running loop wakes to catch up with `rate` steps per second.
TICK_SECONDS = 0.02
DRAIN_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class SimulatorUrls:
    rest: str  # e.g. http://127.0.0.1:PORT/trade-api/v2
    ws: str  # e.g. ws://127.0.0.1:PORT/trade-api/ws/v2
    host: str
    port: int


@dataclass(frozen=True)
class Settlement:
    market_ticker: str
    result: str
    settlement_value: object  # Decimal
    determined_ms: int | None
    settled_ms: int | None


class Simulator:
    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        seed: int | None = None,
        markets: int | None = None,
        faults: FaultConfig | None = None,
        accepted_keys: Mapping[str, rsa.RSAPublicKey] | None = None,
        clock: Callable[[], int] | None = None,
        record_events: bool = True,
        exchange=None,
        **overrides,
    ):
        config = config or SimulatorConfig()
        if seed is not None:
            overrides["seed"] = seed
        if faults is not None:
            overrides["faults"] = faults
        engine = config.engine
        if markets is not None:
            engine = dataclasses.replace(engine, markets=markets)
        if overrides.get("wire_format", config.wire_format) == LEGACY:
            engine = dataclasses.replace(engine, whole_units_only=True)
        self.config = dataclasses.replace(config, engine=engine, **overrides)
        self.clock = clock or (lambda: int(time.time() * 1000))
        # The engine makes the world up; a RecordedExchange (recorded.py) replays ours.
        self.exchange = exchange or Exchange(seed=self.config.seed, start_ms=self.clock(), config=self.config.engine)
        self.private_key: rsa.RSAPrivateKey | None = None
        self.key_id: str | None = None
        if accepted_keys is None:
            # A fresh key pair, so a test can sign without any set-up.
            self.private_key = auth.generate_private_key()
            self.key_id = str(uuid.uuid4())
            accepted_keys = {self.key_id: self.private_key.public_key()}
        self.accepted_keys = dict(accepted_keys)
        self.rate_limiter = RateLimiter(
            self.config.rest_rate_per_s, self.config.rest_burst_seconds, self.config.rest_read_tokens
        )
        # Outages (exchange ms, start and end) and the monotonic times that
        # end the current outage and the current 401 refusal.
        self.outages: list[tuple[int, int]] = []
        self._outage_until = 0.0
        self._auth_refused_until = 0.0
        self.connections: list[Connection] = []
        self.connections_opened = 0
        # Everything that happened, in order (None when record_events is off),
        # and the books before it, so any past book can be rebuilt.
        self.history: list[ExchangeEvent] | None = [] if record_events else None
        self._initial_books = {t: b.copy() for t, b in self.exchange.books.items()}
        # The book changes of each market, in order: true_book_at reads one
        # market's changes, not the whole history (audits of 5,000 markets).
        self._deltas: dict[str, list[BookDelta]] = {}
        self.stats: Counter = Counter()
        self.paused = False
        self._runner: web.AppRunner | None = None
        self._loop_task: asyncio.Task | None = None
        self._outage_task: asyncio.Task | None = None

    # -- running ---------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> SimulatorUrls:
        """Serve REST and WebSocket on host:port (0: any free port); start generating."""
        self._runner = web.AppRunner(build_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # the real port when port=0
        if self.config.rate > 0:
            self._loop_task = asyncio.create_task(self._generate())
        if self.config.outage_every_s:
            self._outage_task = asyncio.create_task(self._outages())
        if self.config.auth_fail_until_s > 0:
            self.refuse_auth(self.config.auth_fail_until_s)
        self.urls = SimulatorUrls(
            rest=f"http://{host}:{bound}{REST_PREFIX}",
            ws=f"ws://{host}:{bound}{WS_PATH}",
            host=host,
            port=bound,
        )
        return self.urls

    async def stop(self) -> None:
        for task in (self._loop_task, self._outage_task):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._outage_task = None
        for connection in list(self.connections):
            connection.close()
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        self._loop_task = None

    def pause(self) -> None:
        """Stop generating (step() still works): the world holds still."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def step(self, n: int = 1) -> list[ExchangeEvent]:
        """Advance the exchange n steps now and hand the events to every client."""
        happened: list[ExchangeEvent] = []
        for _ in range(n):
            events = self.exchange.step(self.clock())
            self.publish(events)
            happened += events
        self.stats["steps"] += n
        return happened

    def publish(self, events: list[ExchangeEvent]) -> None:
        """Hand what just happened on the exchange to every client (and the history)."""
        if self.history is not None:
            self.history.extend(events)
            for event in events:
                if isinstance(event, BookDelta):
                    self._deltas.setdefault(event.market_ticker, []).append(event)
        for connection in list(self.connections):
            connection.deliver_events(events)

    def create_market(self, *, announce: bool = True) -> str:
        """Create a market now; return its ticker. With `announce=False` no
        client hears of it (its `created` lost, as lifecycle frames carry no
        seq on Kalshi and a loss cannot be seen): only a REST listing finds it."""
        events = self.exchange.create_market(self.clock())
        if self.history is not None:
            self.history.extend(events)
        if announce:
            for connection in list(self.connections):
                connection.deliver_events(events)
        return next(e.market.ticker for e in events if isinstance(e, MarketCreated))

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every frame queued for every client has been written."""

        async def all_sent():
            while any(c.pending for c in self.connections):
                await asyncio.sleep(DRAIN_POLL_SECONDS)

        await asyncio.wait_for(all_sent(), timeout)

    def set_faults(self, faults: FaultConfig) -> None:
        """Change the faults of new and open connections (e.g. none, to end a test cleanly)."""
        self.config = dataclasses.replace(self.config, faults=faults)
        for connection in self.connections:
            connection.faults.config = faults

    def configure(self, **changes) -> None:
        """Change settings for new connections and REST calls (e.g. end the hostility
        before a test's final audit); open connections keep their session's."""
        self.config = dataclasses.replace(self.config, **changes)
        self.rate_limiter = RateLimiter(
            self.config.rest_rate_per_s, self.config.rest_burst_seconds, self.config.rest_read_tokens
        )

    def disconnect_all(self) -> None:
        """Close every client connection (what a maintenance window does)."""
        for connection in list(self.connections):
            connection.close()

    def outage(self, seconds: float) -> None:
        """A maintenance outage from now: every connection closed, WebSocket
        handshakes and REST answer 503 for `seconds`. The exchange keeps
        running (books change, trades happen, markets are created and settled).
        Recorded in `self.outages` as (start_ms, end_ms) on the exchange clock."""
        now = self.clock()
        self._outage_until = time.monotonic() + seconds
        self.outages.append((now, now + int(seconds * 1000)))
        self.stats["outages"] += 1
        self.disconnect_all()

    def in_outage(self) -> bool:
        return time.monotonic() < self._outage_until

    def end_outage(self) -> None:
        """End the current outage now (its recorded end stays as announced)."""
        self._outage_until = 0.0

    def refuse_auth(self, seconds: float) -> None:
        """WebSocket handshakes answer 401 for `seconds` (a key that stops working a while)."""
        self._auth_refused_until = time.monotonic() + seconds

    def auth_refused(self) -> bool:
        return time.monotonic() < self._auth_refused_until

    async def _outages(self) -> None:
        while True:
            await asyncio.sleep(self.config.outage_every_s)
            self.outage(self.config.outage_duration_s)

    async def _generate(self) -> None:
        loop = asyncio.get_running_loop()
        started, done = loop.time(), 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            due = int((loop.time() - started) * self.config.rate) - done
            if due > 0:
                done += due
                if not self.paused:
                    self.step(due)

    def _open_connection(self, ws) -> Connection:
        self.connections_opened += 1
        connection = Connection(self, ws, self.connections_opened)
        self.connections.append(connection)
        return connection

    def _close_connection(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)

    # -- ground truth ------------------------------------------------------------

    def true_book(self, ticker: str) -> OrderBook:
        """The market's book right now (a copy), in no-leg prices."""
        return self.exchange.book(ticker).copy()

    def true_book_at(self, ticker: str, ts_ms: int) -> OrderBook:
        """The market's book after every change stamped at or before ts_ms (needs record_events)."""
        if self.history is None:
            raise RuntimeError("true_book_at needs Simulator(record_events=True)")
        book = self._initial_books.get(ticker, OrderBook()).copy()
        for event in self._deltas.get(ticker, ()):
            if event.ts_ms > ts_ms:
                break
            book.apply_delta(event.side, event.price, event.delta)
        return book

    def trades(self) -> list[Trade]:
        """Every trade ever executed, oldest first (exact Decimals, trade_id)."""
        return list(self.exchange.trades)

    def markets(self) -> dict[str, Market]:
        """Every market by ticker (the live records: read, do not change)."""
        return dict(self.exchange.markets)

    def settlements(self) -> list[Settlement]:
        return [
            Settlement(m.ticker, m.result, m.settlement_value, m.determined_ms, m.settled_ms)
            for m in self.exchange.markets.values()
            if m.result
        ]

    def cutoff_ms(self) -> int:
        """The historical cutoff: older trades and settlements live only under /historical."""
        cutoff = self.clock() - int(self.config.historical_age_s * 1000)
        step = int(self.config.historical_step_s * 1000)
        return cutoff - cutoff % step if step > 0 else cutoff

    def signed_headers(self, method: str, path: str) -> dict[str, str]:
        """Headers signed with the simulator's own key (when it made one)."""
        if self.private_key is None:
            raise RuntimeError("this simulator was given its keys; sign with yours")
        return auth.signed_headers(self.key_id, self.private_key, method, path)


__all__ = ["Simulator", "SimulatorConfig", "SimulatorUrls", "EngineConfig", "FaultConfig", "Settlement"]
