"""The whole live collector, assembled: discovery, connections, actions, writer, stats.

`collect()` is what `manage.py collect` runs and what the end-to-end tests
call. It discovers the selected markets over REST, then runs side by side
until `stop` is set (or `duration` passes): the WebSocket connections
(collector/connections.py, each driving its pipeline), the actions worker,
the writer, the catalog's relisting, a background fetch of events and
series, and a structured stats line every `stats_every` seconds. On the
way out it closes the sockets (the pipelines record the hole), lets pending
actions finish for a moment, and flushes the writer: nothing received is
left unwritten. Then, and only then, it writes the clean-shutdown marker.

Crash safety (collector/runs.py): before the feed starts, the run state left
by the last run is read; an unclean stop is recorded as holes (opened before
any new snapshot can close them). A heartbeat keeps the state file's durable
watermark and market list current. A writer that can store nothing for too
long (WriterFailure) stops the collector with an error, so the process exits
non-zero and a supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.conf import settings

from . import runs
from .actions import Actions
from .backfill import BackfillQueue
from .catalog import Catalog, existed_from
from .config import CollectorConfig
from .discovery import Selection, hierarchy_discover, markets_discover
from .client import Credentials, credentials, rest_client
from .connections import Connections
from .pipeline import Pipeline
from .raw_archive import RawArchive
from .writer import Writer, WriterFailure

logger = logging.getLogger("collector")

STATS_EVERY_S = 10.0
ACTIONS_DRAIN_S = 5.0  # at shutdown, how long pending REST work may finish


@dataclass
class Collector:
    """The running parts, for stats and tests."""

    pipeline: Pipeline  # the primary connection's: lifecycle and trades
    writer: Writer
    connections: Connections
    actions: Actions
    backfills: BackfillQueue | None = None
    run: runs.Run | None = None
    background: dict[str, asyncio.Task] | None = None  # side tasks by name, for tests

    def stats(self) -> dict:
        stats = self.connections.stats()
        writer = stats.pop("writer", None) or self.writer.stats()
        stats.update(
            connects=self.connections.connects,
            reconnects=self.connections.reconnects,
            markets=len(self.connections.markets),
            actions_done=self.actions.done,
            actions_failed=self.actions.failed,
            actions_pending=self.actions.queue.qsize(),
            settlements=self.actions.settlements,
            trades_backfilled=self.actions.trades_backfilled,
            backfills_pending=self.backfills.pending if self.backfills else 0,
            backfill_failures=self.backfills.failures if self.backfills else 0,
            durable_at=self.writer.durable_at.isoformat() if self.writer.durable_at else None,
        )
        for key, value in writer.items():
            stats.setdefault(key, value)
        return stats


async def collect(
    *,
    selection: Selection = Selection(),
    stop: asyncio.Event | None = None,
    duration: float | None = None,
    config: CollectorConfig | None = None,
    creds: Credentials | None = None,
    rest_url: str | None = None,
    ws_url: str | None = None,
    stats_every: float = STATS_EVERY_S,
    on_start=None,
    shard=None,
) -> dict:
    """Record the selection until `stop` (or `duration` seconds); return final stats.

    `on_start(collector)` is called once everything runs (tests use it).
    """
    config = config or CollectorConfig.from_settings()
    creds = creds or credentials(required=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if duration is not None:
        loop.call_later(duration, stop.set)

    writer = Writer(config)
    # Every frame, verbatim, in hourly files (collector/raw_archive.py).
    writer.archive = RawArchive.from_config(config)
    # Before any frame: record the last run's crash (if any) and mark this
    # run as started; raises (exit non-zero) if the journal is unusable.
    run = await asyncio.to_thread(runs.run_begin, config, writer)
    writer_stop = asyncio.Event()
    writer_task = asyncio.create_task(writer.run(writer_stop), name="writer")
    collector = None
    clean = False
    async with rest_client(config, creds=creds, base_url=rest_url) as rest:
        try:
            listed_at = time.time()
            found = await markets_discover(rest, selection, shard=shard, combos=config.combos)
            backfills = BackfillQueue(rest=rest, writer=writer, config=config)
            actions = Actions(rest=rest, selection=selection, writer=writer, config=config,
                              backfills=backfills)
            connections = Connections(
                url=ws_url or settings.KALSHI_WS_URL,
                writer=writer,
                config=config,
                actions=actions,
                selection=selection,
                markets=[m["ticker"] for m in found],
                key_id=creds.key_id,
                private_key=creds.private_key,
                shard=shard,
            )
            catalog = Catalog(rest=rest, feed=connections, actions=actions,
                              selection=selection, config=config, shard=shard)
            catalog.listed_at = listed_at
            catalog.recorded_before = frozenset(run.previous_markets)
            connections.set_catalog(catalog)
            _holes_until_first_snapshot(connections, run, found)
            collector = Collector(connections.pipeline, writer, connections, actions, backfills, run)
            side_tasks = [
                asyncio.create_task(actions.run(), name="actions"),
                asyncio.create_task(backfills.run(), name="backfills"),
                asyncio.create_task(catalog.run(), name="catalog"),
                asyncio.create_task(_stats_loop(collector, stats_every), name="stats"),
                asyncio.create_task(_heartbeat(run, writer, connections, config), name="heartbeat"),
                asyncio.create_task(
                    _quietly(hierarchy_discover(rest, {m.get("event_ticker", "") for m in found} - {""})),
                    name="hierarchy",
                ),
                asyncio.create_task(
                    _quietly(_catch_up_trades(run, connections.pipeline, backfills, config)), name="catch-up"
                ),
            ]
            collector.background = {task.get_name(): task for task in side_tasks}
            if on_start is not None:
                on_start(collector)
            feed_task = asyncio.create_task(connections.run(stop), name="connections")
            try:
                # The connections return when `stop` is set and raise on fatal
                # errors; a writer that gave up stops everything.
                await asyncio.wait({feed_task, writer_task}, return_when=asyncio.FIRST_COMPLETED)
                if writer_task.done() and not feed_task.done():
                    logger.critical("collector: the writer stopped (%r); stopping", _error_of(writer_task))
                    stop.set()
                await feed_task
                if not writer_task.done():
                    await catalog.reconcile_at_stop()
            finally:
                if not feed_task.done():
                    feed_task.cancel()
                if not writer_task.done():
                    await actions.drain(ACTIONS_DRAIN_S)
                for task in side_tasks:
                    task.cancel()
                await asyncio.gather(*side_tasks, return_exceptions=True)
            clean = True
        finally:
            if not writer_task.done():
                # The clean-shutdown marker goes in the last batch, after every row.
                writer.add_run_op(runs.op_stop(run.run_id, datetime.now(timezone.utc), clean,
                                               "stopped" if clean else "error"))
            writer_stop.set()
            try:
                await writer_task
            except WriterFailure as exc:
                await asyncio.to_thread(runs.run_end, run, writer, _markets(collector), clean=False,
                                        failure=str(exc))
                raise
            await asyncio.to_thread(runs.run_end, run, writer, _markets(collector), clean=clean)
    final = collector.stats()
    logger.info("collector stopped %s", _format(final))
    return final


def _markets(collector: Collector | None) -> set[str]:
    return set(collector.connections.markets) if collector is not None else set()


def _error_of(task: asyncio.Task):
    return task.exception() if not task.cancelled() else "cancelled"


def _holes_until_first_snapshot(connections: Connections, run: runs.Run, found: list[dict]) -> None:
    """Each market to record is a `not_subscribed` hole from when it existed
    until its first snapshot, so that a market first recorded after the start
    (or created while the collector was down) is never presented as complete
    before that. The markets the last run was recording are left out: its
    crash or disconnect holes cover them from where their record ends."""
    now = datetime.now(timezone.utc)
    for market in found:
        if market["ticker"] not in run.previous_markets:
            connections.market_opened(market["ticker"], existed_from(market, now))


async def _heartbeat(run: runs.Run, writer: Writer, connections: Connections,
                     config: CollectorConfig) -> None:
    """Keep the run's market list and durable watermark current (state file and table)."""
    while True:
        await asyncio.to_thread(runs.run_beat, run, writer, set(connections.markets))
        await asyncio.sleep(config.heartbeat_seconds)


async def _catch_up_trades(run: runs.Run, pipeline: Pipeline, backfills: BackfillQueue,
                           config: CollectorConfig) -> None:
    """Queue the backfill of the trades made while no run was recording.

    A crash left a `crash` trade hole (opened at start); a clean stop left
    its trade channel's break open. Both are backfilled from REST up to the
    moment this run's trade subscription was confirmed, and closed only when
    that succeeded; so is the time from this run's start to that moment.
    """
    while pipeline.trade_live_at is None:
        await asyncio.sleep(0.1)
    margin = timedelta(seconds=config.backfill_margin_seconds)
    until = pipeline.trade_live_at + margin
    # This run owes every trade from its own start, also the first run ever
    # (no earlier hole covers the seconds before the subscription).
    await backfills.enqueue(run.started_at - margin, until)
    if run.crash_trade_gaps:
        since = min(g[3] for g in run.crash_trade_gaps) - margin
        await backfills.enqueue(since, until, (), run.crash_trade_gaps)
    await backfills.enqueue_orphans(before=run.started_at, until=until)


async def _quietly(coro) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - metadata is best effort; recording goes on
        logger.exception("collector metadata discovery failed")


async def _stats_loop(collector: Collector, every: float) -> None:
    """Log one structured line every `every` seconds, with rates since the last."""
    before, then = collector.stats(), time.monotonic()
    while True:
        await asyncio.sleep(every)
        now_stats, now = collector.stats(), time.monotonic()
        elapsed = max(now - then, 1e-9)
        rates = {
            f"{key}_per_s": round((now_stats[key] - before.get(key, 0)) / elapsed, 1)
            for key in ("frames", "rows_written")
            if isinstance(now_stats.get(key), (int, float))
        }
        logger.info("collector stats %s", _format({**rates, **now_stats}))
        before, then = now_stats, now


def _format(stats: dict) -> str:
    """key=value pairs (nested dicts flattened with dots), for grep and log parsers."""
    parts = []
    for key, value in stats.items():
        if isinstance(value, dict):
            parts.extend(f"{key}.{k}={v}" for k, v in value.items())
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)
