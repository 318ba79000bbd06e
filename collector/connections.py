"""Every market to record, spread over as many WebSocket connections as Kalshi allows.

Kalshi caps the markets of one subscription (error 26) and does not publish
the cap; a subscription sent on a connection that already has one for the
channel may be merged into it, so the cap can be a connection's. The
collector therefore records its markets over several connections
(collector/ws.py `KalshiFeed`, one Pipeline each, sharing the writer and the
RecordState), each given at most `capacity` markets:
`max_markets_per_connection` at first, lowered to what Kalshi proved when a
connection that holds books is answered 26 (the markets refused then are
placed on another connection, a new one when all are full).

The first connection, the primary, also carries the lifecycle channels and
`trade`, and the catalog relists after it connects; the others carry books
only. Each connection reconnects on its own, and its drop is a hole of its
own markets only.

This is the one place that knows which connection records a market:
`add_markets`, `retire`, `market_opened` and `market_missed` are what the
catalog, the actions and the feeds call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from .pipeline import Pipeline, RecordState
from .ws import KalshiFeed, guarded

logger = logging.getLogger(__name__)


class Connections:
    """The collector's WebSocket connections. See the module docstring."""

    def __init__(self, *, url: str, writer, config, actions, selection, markets=(),
                 key_id: str = "", private_key=None, shard=None, clock=None):
        self.url = url
        self.writer = writer
        self.config = config
        self.actions = actions
        self.selection = selection
        self.shard = shard
        self._key_id = key_id
        self._private_key = private_key
        self.state = RecordState(clock)
        self.capacity = config.max_markets_per_connection
        self.markets: set[str] = set()  # every book to record, on whichever connection
        # Every market this process set out to record, retired ones included:
        # none of them can have "ended unseen" (collector/catalog.py), even
        # while its rows wait in the journal for PostgreSQL.
        self.recorded: set[str] = set()
        self.owner: dict[str, KalshiFeed] = {}
        self.feeds: list[KalshiFeed] = []
        self.catalog = None  # collector.catalog.Catalog, set by the runner
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._failed: asyncio.Future | None = None
        self._background: set[asyncio.Task] = set()
        actions.feed = self
        self.primary = self._new_feed()
        self.pipeline = self.primary.pipeline  # lifecycle, trades and the catalog's holes
        self._place(dict.fromkeys(markets))

    # -- the connections ---------------------------------------------------------

    def _new_feed(self) -> KalshiFeed:
        index = len(self.feeds)
        feed = KalshiFeed(
            url=self.url, pipeline=Pipeline(self.writer, self.config, state=self.state),
            config=self.config, actions=self.actions, markets=set(), selection=self.selection,
            key_id=self._key_id, private_key=self._private_key, shard=self.shard,
            connections=self, primary=index == 0, name=str(index),
        )
        feed.catalog = self.catalog
        archive = getattr(self.writer, "archive", None)
        if archive is not None:
            archive.state = self.state
            feed.pipeline.archive = archive.tap(str(index))
        self.feeds.append(feed)
        if index:
            logger.info("ws opening connection=%d capacity=%d markets=%d",
                        index, self.capacity, len(self.markets))
        if self._stop is not None:
            self._launch(feed)
        return feed

    def set_catalog(self, catalog) -> None:
        self.catalog = catalog
        for feed in self.feeds:
            feed.catalog = catalog
        self.pipeline.on_lifecycle_gap = catalog.lifecycle_gap

    async def run(self, stop: asyncio.Event) -> None:
        """Run every connection until `stop`; a fatal error in one stops all and is raised."""
        self._stop = stop
        self._failed = asyncio.get_running_loop().create_future()
        for feed in self.feeds:
            self._launch(feed)
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({waiter, self._failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stop.set()
            while self._tasks:  # a feed may be opened while the others stop
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._failed.done():
            raise self._failed.result()

    def _launch(self, feed: KalshiFeed) -> None:
        task = asyncio.create_task(feed.run(self._stop), name=f"feed-{feed.name}")
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        if self._failed is not None and not self._failed.done():
            self._failed.set_result(task.exception())

    # -- which connection records a market ------------------------------------------

    def _with_room(self, but: KalshiFeed | None = None) -> KalshiFeed:
        """A connection with room for one more market (a new one when all are full)."""
        for feed in self.feeds:
            if feed is not but and len(feed.markets) < self.capacity:
                return feed
        return self._new_feed()

    def _place(self, tickers, but: KalshiFeed | None = None) -> dict[KalshiFeed, list[str]]:
        """Give each ticker a connection with room; return them by connection."""
        placed: dict[KalshiFeed, list[str]] = {}
        for ticker in tickers:
            feed = self._with_room(but)
            self.markets.add(ticker)
            self.recorded.add(ticker)
            self.owner[ticker] = feed
            feed.markets.add(ticker)
            placed.setdefault(feed, []).append(ticker)
        return placed

    async def add_markets(self, tickers) -> None:
        """Record these markets' books from now on, each on a connection with room."""
        new = [t for t in dict.fromkeys(tickers) if t not in self.markets]
        for feed, placed in self._place(new).items():
            feed.subscribe_now(placed)

    async def overflow(self, feed: KalshiFeed, tickers: list[str], held: int) -> None:
        """`feed`'s connection, holding `held` books, was answered 26 for
        `tickers`: Kalshi allows no more there. Learn the cap; place them elsewhere."""
        if held < self.capacity:
            logger.warning("ws Kalshi holds at most %d markets on a connection (26); "
                           "capacity %d -> %d", held, self.capacity, held)
            self.capacity = held
        for ticker in tickers:
            feed.markets.discard(ticker)
            feed.refused.pop(ticker, None)
        for target, placed in self._place(tickers, but=feed).items():
            target.subscribe_now(placed)

    def retire(self, ticker: str) -> None:
        """Stop recording a settled market's book (beside the readers)."""
        task = asyncio.create_task(guarded(self.retire_market(ticker)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def retire_market(self, ticker: str) -> None:
        feed = self.owner.get(ticker)
        try:
            if feed is not None:
                await feed.retire_market(ticker)
        finally:
            # Once its connection let it go, it is no longer recorded, even
            # if the unsubscribe could not be sent (the connection closing).
            if feed is None or ticker not in feed.markets:
                self.markets.discard(ticker)
                self.owner.pop(ticker, None)

    def wanted(self, market_ticker: str, event_ticker: str | None) -> bool:
        """This process's share (`--shard`); everything without a shard."""
        return self.shard is None or self.shard.owns(event_ticker or "", market_ticker)

    def market_opened(self, ticker: str, at=None) -> None:
        """A market to record opened (at `at`): a hole until its first snapshot."""
        owner = self.owner.get(ticker)
        (owner.pipeline if owner is not None else self.pipeline).market_opened(ticker, at)

    def market_missed(self, ticker: str, existed_from) -> None:
        self.pipeline.market_missed(ticker, existed_from)

    def live_book(self, ticker: str):
        """The market's LiveBook on its connection, or None."""
        owner = self.owner.get(ticker)
        return owner.pipeline.books.get(ticker) if owner is not None else None

    def in_gap(self, ticker: str) -> bool:
        return ticker in self.state.gapped

    # -- numbers ---------------------------------------------------------------------

    @property
    def connects(self) -> int:
        return sum(f.connects for f in self.feeds)

    @property
    def reconnects(self) -> int:
        return sum(f.reconnects for f in self.feeds)

    def stats(self) -> dict:
        """The pipelines' counters added up (lags: the worst), and the connections."""
        total: Counter = Counter()
        by_type: Counter = Counter()
        lags, lag_maxes, writer = [], [], None
        for feed in self.feeds:
            stats = feed.pipeline.stats()
            writer = stats.pop("writer", writer)
            by_type.update(stats.pop("by_type", {}))
            lag, lag_max = stats.pop("lag_seconds", None), stats.pop("lag_max_seconds", None)
            if lag is not None:
                lags.append(lag)
            if lag_max is not None:
                lag_maxes.append(lag_max)
            total.update({k: v for k, v in stats.items() if isinstance(v, (int, float))})
        result = dict(total)
        result.update(
            by_type=dict(by_type),
            lag_seconds=max(lags) if lags else None,
            lag_max_seconds=max(lag_maxes) if lag_maxes else None,
            connections=len(self.feeds),
            connection_capacity=self.capacity,
        )
        if writer is not None:
            result["writer"] = writer
        return result
