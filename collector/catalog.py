"""The catalog, reconciled: which markets exist, listed again until nothing is missed.

Lifecycle messages announce new markets and settlements, but not while we are
disconnected, not in a lifecycle gap, and not for a market created between a
listing and the subscription. So the collector subscribes the lifecycle
channels first and then lists (GET /markets), and lists again after every
reconnect (and `relist_after_connect_s` later, for markets REST did not
show yet), after every lifecycle gap, every `reconcile_every_s`
(`Catalog.run`) and once more at a clean stop. Each relisting asks only for markets updated since the
previous one (`min_updated_ts`, with a margin). A market found that way:

* new and wanted (selection and shard): a `not_subscribed` hole from its
  open time until its first snapshot, then its book is subscribed;
* determined or settled while it was being recorded: the settlement is
  submitted to the actions (as the lifecycle message would have been) and its
  book retired.

`Shard` is `--shard i/N`: a stable share of the markets by event ticker
(crc32, not Python's salted `hash()`), so that N processes writing to one
database record every market exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from markets.models import OrderbookSnapshot
from markets.services import markets_upsert

from . import commands as cmd
from .db import run_db
from .discovery import RECORDABLE_STATUSES

logger = logging.getLogger(__name__)

# Listings overlap by this much: Kalshi's clock and ours disagree a little.
RELIST_MARGIN_S = 60
SETTLED_STATUSES = frozenset({"determined", "settled", "finalized"})


@dataclass(frozen=True)
class Shard:
    """Process `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """`"i/N"` -> Shard(i, N); ValueError naming the problem otherwise."""
        try:
            left, right = text.split("/")
            index, count = int(left), int(right)
        except ValueError:
            raise ValueError(f"--shard must look like i/N (e.g. 0/3), not {text!r}") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"--shard {text}: need 0 <= i < N")
        return cls(index, count)

    def owns(self, event_ticker: str, market_ticker: str = "") -> bool:
        """Whether this shard records the market (all of an event go together)."""
        key = event_ticker or market_ticker
        return zlib.crc32(key.encode()) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def market_filters(combos: str) -> dict:
    """Query parameters every GET /markets listing carries."""
    return {"mve_filter": "exclude"} if combos != "include" else {}


def _when(text) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _decimal(value) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None


def existed_from(market: dict, now: datetime) -> datetime:
    """From when a listed market may have had a book: its creation or opening,
    whichever is earlier (never later than now)."""
    known = [t for t in (_when(market.get("open_time")), _when(market.get("created_time"))) if t is not None]
    return min([*known, now])


def _recorded(ticker: str) -> bool:
    """Whether any book of the market was ever stored (by this or another run)."""
    return OrderbookSnapshot.objects.filter(market_ticker=ticker).exists()


class Catalog:
    """Lists markets again and acts on what changed. See the module docstring."""

    def __init__(self, *, rest, feed, actions, selection, config, shard: Shard | None = None):
        self.rest = rest
        self.feed = feed  # collector.connections.Connections: where markets are recorded
        self.actions = actions
        self.selection = selection
        self.config = config
        self.shard = shard
        self.listed_at: float | None = None  # epoch seconds of the last listing's start
        self.wake = asyncio.Event()
        self.relists = 0
        self.found_new = 0
        self.found_settled = 0
        self.found_missed = 0
        self._missed: set[str] = set()  # markets that ended unrecorded, already given their hole
        # The last run's markets (set by the runner): its crash or disconnect
        # holes cover them from where their record ends.
        self.recorded_before: frozenset[str] = frozenset()
        self._lock = asyncio.Lock()

    def wants(self, market: dict) -> bool:
        ticker = market.get("ticker", "")
        if self.shard is not None and not self.shard.owns(market.get("event_ticker") or "", ticker):
            return False
        return (
            self.selection.everything
            or ticker in self.selection.markets
            or (market.get("series_ticker") or "") in self.selection.series
        )

    def _unseen(self, market: dict) -> bool:
        """Whether a wanted market may have lived without us: not recorded by
        this process nor by the last run, nor already given its hole.

        The database alone cannot say: while PostgreSQL is away (or the
        journal is being loaded back) a market recorded and retired minutes
        ago has no stored snapshot yet, and an open `not_subscribed` hole
        from its creation would declare its whole recorded life missing.
        """
        ticker = market.get("ticker")
        return (self.wants(market) and ticker not in self._missed
                and ticker not in self.feed.recorded and ticker not in self.recorded_before)

    def lifecycle_gap(self) -> None:
        """The lifecycle stream lost messages: list again soon."""
        self.wake.set()

    async def reconcile_on_connect(self) -> None:
        """List now, and once more `relist_after_connect_s` later: a market
        created just before the lifecycle subscription was confirmed is
        announced to nobody, and REST may not list it yet."""
        await self.reconcile("connect")
        asyncio.get_running_loop().call_later(self.config.relist_after_connect_s, self.wake.set)

    async def run(self) -> None:
        """Relist every `reconcile_every_s`, or at once when woken (cancel to stop)."""
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), self.config.reconcile_every_s)
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                await self.reconcile("periodic")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - REST trouble: the next round tries again
                logger.warning("catalog relist failed error=%r", exc)

    async def reconcile_at_stop(self) -> None:
        """List once more before a clean stop, bounded by `final_reconcile_s`.

        A market created since the last listing with its `created` lost would
        otherwise end this run with no hole at all: listed now, it gets its
        `not_subscribed` hole from when it existed (left open: no snapshot
        comes any more), and the next run records it.
        """
        try:
            await asyncio.wait_for(self.reconcile("stop"), self.config.final_reconcile_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - REST away: the next run's listing finds them
            logger.warning("catalog final relist failed error=%r; the next start lists again", exc)

    async def reconcile(self, reason: str) -> int:
        """List markets updated since the last listing; act on them. Returns how many were new."""
        async with self._lock:
            started = time.time()
            params = market_filters(self.config.combos)
            if self.listed_at is not None:
                params["min_updated_ts"] = int(self.listed_at) - RELIST_MARGIN_S
            markets = [m async for m in self.rest.markets(**params)]
            self.listed_at = started
            self.relists += 1
            new = await self.apply(markets)
            logger.info("catalog relisted reason=%s markets=%d new=%d", reason, len(markets), new)
            return new

    async def apply(self, markets: list[dict]) -> int:
        """What a listing means for the recording (pure but for the calls it makes)."""
        recording = self.feed.markets
        new: list[str] = []
        now = datetime.now(timezone.utc)
        for market in markets:
            ticker = market.get("ticker")
            if not ticker:
                continue
            status = market.get("status", "active")
            since = existed_from(market, now)
            if status in SETTLED_STATUSES and ticker not in recording:
                if self._unseen(market) and not await run_db(_recorded, ticker):
                    # It lived and ended unseen: a hole says so, and its settlement is fetched.
                    self._missed.add(ticker)
                    self.found_missed += 1
                    logger.warning("catalog market=%s ended before it was recorded status=%s", ticker, status)
                    self.feed.market_missed(ticker, since)
                    self.actions.submit(cmd.MarketDetermined(
                        ticker, market.get("result") or None,
                        _decimal(market.get("settlement_value_dollars")), None))
                continue
            if status in SETTLED_STATUSES and ticker in recording:
                self.found_settled += 1
                self.actions.submit(cmd.MarketDetermined(
                    ticker, market.get("result") or None,
                    _decimal(market.get("settlement_value_dollars")), None))
                if status != "determined":
                    self.actions.submit(cmd.MarketSettled(ticker, _when(market.get("settlement_ts"))))
                    self.feed.retire(ticker)
                continue
            if ticker in recording or status not in RECORDABLE_STATUSES or not self.wants(market):
                continue
            # A hole from the moment the market existed (or opened) until its
            # first snapshot; a market listed before it opens gets one too, from
            # its creation, so no instant of its life is presented as complete.
            self.feed.market_opened(ticker, since)
            new.append(ticker)
        if new:  # subscribed first: the sooner its hole closes
            self.found_new += len(new)
            await self.feed.add_markets(new)
        if markets:
            await run_db(lambda: markets_upsert(markets=markets))
        return len(new)
