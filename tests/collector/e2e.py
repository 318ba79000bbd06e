"""Helpers for the end-to-end tests: a real simulator, the real collector, PostgreSQL.

A run goes: the simulator starts paused (the world holds still), the
collector starts and subscribes; once every book has its snapshot the
simulator resumes, so every trade and delta from then on is owed to the
collector. At the end the simulator pauses again, faults are switched off
and a few clean steps reveal any trailing gap; the test waits until the
collector's live books equal the truth and its work queue is empty, stops
it, and compares what PostgreSQL holds with the simulator's truth.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone

from collector.config import CollectorConfig
from collector.db import run_db
from collector.discovery import Selection
from collector.client import Credentials
from collector.runner import Collector, collect
from simulator import FaultConfig, Simulator
from markets.models import OrderbookDelta, OrderbookSnapshot, Settlement, Trade
from markets.replay import book_at

WAIT_S = 60.0  # an upper bound for a wait, never a timing assertion
POLL_S = 0.05
TERMINAL_STATUSES = {"finalized"}


def collector_config(tmp_path, **overrides) -> CollectorConfig:
    values = dict(
        journal_dir=tmp_path / "journal",
        raw_archive_url=str(tmp_path / "raw"),
        flush_seconds=0.1,
        checkpoint_every_deltas=25,
        backoff_initial=0.05,
        backoff_max=0.5,
        rest_rate_per_s=500.0,
        backfill_margin_seconds=2.0,
        subscribe_batch=4,  # several add_markets batches even with few markets
    )
    values.update(overrides)
    return CollectorConfig(**values)


async def wait_for(condition, what: str, timeout: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


@dataclasses.dataclass
class Run:
    sim: Simulator
    config: CollectorConfig
    stop: asyncio.Event
    task: asyncio.Task
    collector: Collector | None = None
    first_trade: int = 0  # index in sim.trades() of the first trade owed to us
    start_markets: frozenset = frozenset()
    resumed_ms: int = 0  # simulator time when recording began

    def created_markets(self) -> set[str]:
        """Markets the exchange created while we recorded."""
        return {t for t, m in self.sim.markets().items() if m.created_ms >= self.resumed_ms}

    def owed_settlements(self) -> dict:
        """Settlements determined while we recorded, by ticker."""
        return {s.market_ticker: s for s in self.sim.settlements()
                if s.determined_ms is not None and s.determined_ms >= self.resumed_ms}

    def alive(self) -> bool:
        """True while the collector runs; re-raises what stopped it."""
        if self.task.done():
            self.task.result()
            raise AssertionError("the collector stopped on its own")
        return True

    @property
    def pipeline(self):
        return self.collector.pipeline

    def books_match_truth(self) -> bool:
        """Every subscribed market has a reliable live book equal to the truth."""
        connections = self.collector.connections
        for ticker in connections.markets:
            live = connections.live_book(ticker)
            if live is None or not live.reliable or live.book is None:
                return False
            truth = self.sim.true_book(ticker)
            if live.book.yes != truth.yes or live.book.no != truth.no:
                return False
        return True


async def start_run(sim: Simulator, config: CollectorConfig, selection: Selection = Selection()) -> Run:
    """Start the collector against a paused simulator; resume it once all books are in."""
    sim.pause()
    stop = asyncio.Event()
    holder: dict = {}
    task = asyncio.create_task(collect(
        selection=selection,
        stop=stop,
        config=config,
        creds=Credentials(sim.key_id, sim.private_key),
        rest_url=sim.urls.rest,
        ws_url=sim.urls.ws,
        stats_every=3600,
        on_start=lambda c: holder.setdefault("collector", c),
    ))
    await wait_for(lambda: "collector" in holder or task.done(), "the collector to start")
    if task.done():
        task.result()  # raise what stopped it
    run = Run(sim, config, stop, task, holder["collector"])
    await wait_for(lambda: run.collector.connections.markets and run.books_match_truth() and run.alive(), "initial snapshots")
    run.start_markets = frozenset(run.collector.connections.markets)
    run.first_trade = len(sim.trades())
    run.resumed_ms = sim.clock()
    sim.resume()
    return run


async def finish_run(run: Run, *, clean_steps: int = 40) -> dict:
    """Pause, reveal trailing gaps with clean steps, wait until caught up, stop."""
    sim = run.sim
    sim.pause()
    sim.set_faults(FaultConfig())
    sim.step(clean_steps)
    await sim.drain()
    await wait_for(
        lambda: run.alive() and run.books_match_truth() and run.collector.actions.idle
        and not run.pipeline._channel_break,
        "the collector to catch up",
    )
    # Trades owed by a backfill (or the start-up catch-up) may still be on their way.
    catch_up = run.collector.background["catch-up"]
    await wait_for(lambda: run.alive() and run.collector.actions.idle and catch_up.done()
                   and run.collector.backfills.idle, "backfills")
    run.stop.set()
    return await asyncio.wait_for(run.task, WAIT_S)


# -- reading back what was stored ----------------------------------------------


def _recorded_books(tickers) -> dict:
    """For each ticker, book_at its last recorded instant (None when nothing stored)."""
    result = {}
    for ticker in tickers:
        last = [
            model.objects.filter(market_ticker=ticker).order_by("-received_at")
            .values_list("received_at", flat=True).first()
            for model in (OrderbookSnapshot, OrderbookDelta)
        ]
        last = [t for t in last if t is not None]
        result[ticker] = book_at(ticker, max(last)) if last else None
    return result


async def recorded_books(tickers) -> dict:
    return await run_db(_recorded_books, sorted(tickers))


def _stored_settlements() -> dict:
    return {s.market_ticker: s for s in Settlement.objects.all()}


async def stored_settlements() -> dict:
    return await run_db(_stored_settlements)


def _stored_trades() -> tuple[int, dict]:
    rows = list(Trade.objects.values_list(
        "trade_id", "market_ticker", "yes_price", "no_price", "count", "taker_outcome_side",
        "is_block_trade", "ts"))
    return len(rows), {r[0]: r[1:] for r in rows}


async def stored_trades() -> tuple[int, dict]:
    return await run_db(_stored_trades)


def truth_trades(sim: Simulator, first: int) -> dict:
    return {
        t.trade_id: (t.market_ticker, t.yes_price, t.no_price, t.count, t.taker_outcome_side,
                     t.is_block_trade, datetime.fromtimestamp(t.ts_ms / 1000, tz=timezone.utc))
        for t in sim.trades()[first:]
    }

