"""The whole live collector, assembled: discovery, feed, actions, writer, stats.

`collect()` is what `manage.py collect` runs and what the end-to-end tests
call. It discovers the selected markets over REST, then runs side by side
until `stop` is set (or `duration` passes): the WebSocket feed (which drives
the pipeline), the actions worker, the writer, a background fetch of events
and series, and a structured stats line every `stats_every` seconds. On the
way out it closes the socket (the pipeline records the hole), lets pending
actions finish for a moment, and flushes the writer: nothing received is
left unwritten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.conf import settings

from markets.models import SequenceGap

from .actions import Actions
from .backfill import trades_backfill
from .catalog import Catalog
from .config import CollectorConfig
from .db import run_db
from .discovery import Selection, hierarchy_discover, markets_discover
from .client import Credentials, credentials, rest_client
from .ws import KalshiFeed
from .pipeline import Pipeline
from .writer import Writer

logger = logging.getLogger("collector")

STATS_EVERY_S = 10.0
ACTIONS_DRAIN_S = 5.0  # at shutdown, how long pending REST work may finish
# At start-up, trades missed while the collector was not running are fetched
# from REST, at most this far back (older ones: `manage.py backfill_trades`).
CATCH_UP_MAX = timedelta(days=1)


@dataclass
class Collector:
    """The running parts, for stats and tests."""

    pipeline: Pipeline
    writer: Writer
    feed: KalshiFeed
    actions: Actions
    background: dict[str, asyncio.Task] | None = None  # side tasks by name, for tests

    def stats(self) -> dict:
        stats = dict(self.pipeline.stats())
        writer = stats.pop("writer", None) or self.writer.stats()
        stats.update(
            connects=self.feed.connects,
            reconnects=self.feed.reconnects,
            markets=len(self.feed.markets),
            actions_done=self.actions.done,
            actions_failed=self.actions.failed,
            actions_pending=self.actions.queue.qsize(),
            settlements=self.actions.settlements,
            trades_backfilled=self.actions.trades_backfilled,
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
    pipeline = Pipeline(writer, config)
    writer_stop = asyncio.Event()
    writer_task = asyncio.create_task(writer.run(writer_stop), name="writer")
    async with rest_client(config, creds=creds, base_url=rest_url) as rest:
        try:
            listed_at = time.time()
            found = await markets_discover(rest, selection, shard=shard, combos=config.combos)
            actions = Actions(rest=rest, selection=selection, writer=writer, config=config)
            feed = KalshiFeed(
                url=ws_url or settings.KALSHI_WS_URL,
                pipeline=pipeline,
                config=config,
                actions=actions,
                markets={m["ticker"] for m in found},
                selection=selection,
                key_id=creds.key_id,
                private_key=creds.private_key,
                shard=shard,
            )
            catalog = feed.catalog = Catalog(rest=rest, feed=feed, pipeline=pipeline, actions=actions,
                                             selection=selection, config=config, shard=shard)
            catalog.listed_at = listed_at
            pipeline.on_lifecycle_gap = catalog.lifecycle_gap
            collector = Collector(pipeline, writer, feed, actions)
            side_tasks = [
                asyncio.create_task(actions.run(), name="actions"),
                asyncio.create_task(catalog.run(), name="catalog"),
                asyncio.create_task(_stats_loop(collector, stats_every), name="stats"),
                asyncio.create_task(
                    _quietly(hierarchy_discover(rest, {m.get("event_ticker", "") for m in found} - {""})),
                    name="hierarchy",
                ),
                asyncio.create_task(_quietly(_catch_up_trades(rest, writer, config)), name="catch-up"),
            ]
            collector.background = {task.get_name(): task for task in side_tasks}
            if on_start is not None:
                on_start(collector)
            try:
                await feed.run(stop)  # returns when `stop` is set; raises on fatal errors
            finally:
                await actions.drain(ACTIONS_DRAIN_S)
                for task in side_tasks:
                    task.cancel()
                await asyncio.gather(*side_tasks, return_exceptions=True)
        finally:
            writer_stop.set()
            await writer_task
    final = collector.stats()
    logger.info("collector stopped %s", _format(final))
    return final


async def _catch_up_trades(rest, writer: Writer, config: CollectorConfig) -> None:
    """Fetch the trades made while the collector was not running.

    A previous run that stopped left its trade channel's gap open; trades,
    unlike books, can be fetched after the fact, so the gap is filled from
    REST (once the live trade subscription is up) and then closed.
    """
    since = await run_db(_open_trade_gap_since)
    if since is None:
        return
    started = datetime.now(timezone.utc)
    margin = timedelta(seconds=config.backfill_margin_seconds)
    # By then the live subscription delivers trades and the writer has flushed.
    await asyncio.sleep(2 * config.flush_seconds + margin.total_seconds())
    start = max(since - margin, started - CATCH_UP_MAX)
    if start > since - margin:
        logger.warning("collector catch-up limited to %s; run backfill_trades --start %s for the rest",
                       CATCH_UP_MAX, (since - margin).isoformat())
    result = await trades_backfill(rest, start=start, end=started + margin)
    writer.close_gap("", "trade", started)
    logger.info("collector caught up trades since=%s stored=%d", start.isoformat(), result.stored)


def _open_trade_gap_since() -> datetime | None:
    gap = (
        SequenceGap.objects.filter(channel="trade", market_ticker="", recovered_at__isnull=True)
        .order_by("detected_at")
        .first()
    )
    return gap.detected_at if gap is not None else None


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
