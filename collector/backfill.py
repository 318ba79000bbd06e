"""Fetch trades after the fact from Kalshi's REST API and store the ones we lack.

Trades, unlike books, can be recovered: GET /markets/trades serves the live
tier and GET /historical/trades everything created before the cutoff
(GET /historical/cutoff `trades_created_ts`); a trade lives in exactly one
of them, so a window that straddles the cutoff is split in two. Rows are
stored with `trades_ingest_new_ids`, which skips any trade whose id is
already stored for that market: what the live collector recorded is never
duplicated, even when REST stamps it with a different precision.

Both `manage.py backfill_trades` and the live collector (after a gap on the
trade channel) call `trades_backfill`; the live collector goes through
`BackfillQueue`, the persistent retry queue of trade holes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from markets.fixedpoint import parse_count, parse_price, price_from_cents
from markets.ingest import trades_ingest_new_ids
from markets.models import BackfillStatus, SequenceGap, TradeBackfill
from markets.services import parse_time

from .backoff import backoff_delays
from .db import run_db
from .rest import KalshiRest

logger = logging.getLogger(__name__)

INGEST_BATCH = 1000  # one page of trades; one COPY per page
# Kalshi's REST may serve a trade a moment after the WebSocket announced it.
BACKFILL_SETTLE = timedelta(seconds=1)
DB_ERRORS = (OperationalError, InterfaceError)


@dataclass
class BackfillResult:
    fetched: int = 0
    stored: int = 0
    pages: dict[str, int] = field(default_factory=lambda: {"live": 0, "historical": 0})


def trade_row(trade: dict, *, source: str, received_at: datetime) -> tuple:
    """A REST `Trade` object as a row in TRADES.columns order (markets/record/schema.py).

    Current fields (`yes_price_dollars`, `count_fp`) are preferred; legacy
    integer cents and counts (`yes_price`, `count`) are read when alone.
    """
    if trade.get("yes_price_dollars") not in (None, ""):
        yes_price = parse_price(trade["yes_price_dollars"])
    else:
        yes_price = price_from_cents(trade["yes_price"])
    if trade.get("no_price_dollars") not in (None, ""):
        no_price = parse_price(trade["no_price_dollars"])
    elif trade.get("no_price") not in (None, ""):
        no_price = price_from_cents(trade["no_price"])
    else:
        no_price = 1 - yes_price
    count = trade["count_fp"] if trade.get("count_fp") not in (None, "") else trade["count"]
    created = parse_time(trade["created_time"])
    # The WebSocket stamps trades in milliseconds (ts_ms): keep REST times at
    # the same precision so the same trade gets the same primary key.
    created = created.replace(microsecond=created.microsecond // 1000 * 1000)
    return (
        trade["ticker"],
        created,
        trade["trade_id"],
        yes_price,
        no_price,
        parse_count(count),
        trade.get("taker_outcome_side") or None,
        trade.get("taker_book_side") or None,
        trade.get("taker_side") or None,
        bool(trade.get("is_block_trade", False)),
        received_at,
        source,
    )


def split_at_cutoff(
    start: datetime, end: datetime, cutoff: datetime | None
) -> list[tuple[str, datetime, datetime]]:
    """[(tier, start, end)]: the part before `cutoff` is historical, the rest live."""
    if cutoff is None or cutoff <= start:
        return [("live", start, end)]
    if cutoff >= end:
        return [("historical", start, end)]
    return [("historical", start, cutoff), ("live", cutoff, end)]


async def trades_backfill(
    rest: KalshiRest,
    *,
    start: datetime,
    end: datetime,
    tickers: Iterable[str] | None = None,
    on_page: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Fetch and store every trade in [start, end] of `tickers` (None: every market).

    `on_page(n)` is called with the number of trades on each page fetched
    (the progress bar's hook).
    """
    cutoff = (await rest.historical_cutoff()).get("trades_created_ts")
    result = BackfillResult()
    for tier, tier_start, tier_end in split_at_cutoff(start, end, cutoff):
        fetch = rest.historical_trades if tier == "historical" else rest.trades
        for ticker in list(tickers) if tickers is not None else [None]:
            batch: list[tuple] = []
            async for trade in fetch(
                ticker=ticker,
                min_ts=math.floor(tier_start.timestamp()),
                max_ts=math.ceil(tier_end.timestamp()),
            ):
                result.fetched += 1
                row = trade_row(trade, source="historical" if tier == "historical" else "rest",
                                received_at=datetime.now(timezone.utc))
                # Unix-second query bounds are coarser than the window.
                if tier_start <= row[1] <= tier_end:
                    batch.append(row)
                if len(batch) >= INGEST_BATCH:
                    result.stored += await run_db(trades_ingest_new_ids, batch)
                    result.pages[tier] += 1
                    if on_page:
                        on_page(len(batch))
                    batch = []
            if batch:
                result.stored += await run_db(trades_ingest_new_ids, batch)
                result.pages[tier] += 1
                if on_page:
                    on_page(len(batch))
    logger.info(
        "backfill start=%s end=%s fetched=%d stored=%d pages=%s",
        start.isoformat(), end.isoformat(), result.fetched, result.stored, result.pages,
    )
    return result


# --- the persistent retry queue of trade holes ---------------------------------


def _enqueue(since: datetime, until: datetime, tickers: list[str], gaps: list, not_before: datetime) -> int:
    """Queue a backfill, merged into a pending one of the same markets it overlaps.

    One pending backfill per market set and window: a window that overlaps
    (or touches) a pending one widens it and adds its holes to it.
    """
    with transaction.atomic():
        pending = (
            TradeBackfill.objects.select_for_update()
            .filter(status=BackfillStatus.PENDING, market_tickers=tickers,
                    since__lte=until, until__gte=since)
            .order_by("since")
            .first()
        )
        if pending is not None:
            pending.since = min(pending.since, since)
            pending.until = max(pending.until, until)
            pending.gaps = pending.gaps + [g for g in gaps if g not in pending.gaps]
            pending.next_attempt_at = max(pending.next_attempt_at, not_before)
            pending.save(update_fields=["since", "until", "gaps", "next_attempt_at"])
            return pending.id
        return TradeBackfill.objects.create(
            since=since, until=until, market_tickers=tickers, gaps=gaps, next_attempt_at=not_before,
        ).id


def _due(now: datetime, limit: int) -> list[TradeBackfill]:
    return list(
        TradeBackfill.objects.filter(status=BackfillStatus.PENDING, next_attempt_at__lte=now)
        .order_by("since", "id")[:limit]
    )


def _pending_count() -> int:
    return TradeBackfill.objects.filter(status=BackfillStatus.PENDING).count()


def _done(item: TradeBackfill, stored: int, now: datetime) -> bool:
    """`item`'s window was fetched: done, unless the row grew meanwhile (then False).

    `item` is the row as read before its trades were fetched, which takes a
    while; meanwhile `_enqueue` may have merged another hole into the same
    pending row (a wider window, more gaps). Marking the row done from the
    old copy would leave that hole open for ever and its trades unfetched.
    So, under the row's lock: unchanged, it is done; grown, it stays pending
    with only the gaps `item` did not carry (their whole window is fetched
    again; trades already stored are skipped). Either way `item.gaps` are
    covered by what was fetched and may be closed.
    """
    with transaction.atomic():
        row = TradeBackfill.objects.select_for_update().get(id=item.id)
        row.stored += stored
        row.last_error = ""
        if (row.since, row.until, row.gaps) == (item.since, item.until, item.gaps):
            row.status = BackfillStatus.DONE
            row.done_at = now
        else:
            row.gaps = [g for g in row.gaps if g not in item.gaps]
        row.save(update_fields=["stored", "last_error", "status", "done_at", "gaps"])
        return row.status == BackfillStatus.DONE


def _failed(backfill_id: int, attempts: int, error: str, retry_at: datetime) -> None:
    # Never earlier than a hole merged in meanwhile asked for (`_enqueue`).
    TradeBackfill.objects.filter(id=backfill_id).update(
        attempts=attempts, last_error=error[:1000],
        next_attempt_at=Greatest(F("next_attempt_at"), Value(retry_at)),
    )


def _orphan_trade_holes(before: datetime) -> list[tuple]:
    """Open trade holes detected before `before` that no pending backfill will close."""
    owed = set()
    for gaps in TradeBackfill.objects.filter(status=BackfillStatus.PENDING).values_list("gaps", flat=True):
        owed.update(tuple(g) for g in gaps)
    holes = SequenceGap.objects.filter(
        channel="trade", recovered_at__isnull=True, detected_at__lt=before,
    ).values_list("market_ticker", "channel", "session_id", "detected_at")
    return [h for h in holes if _gap_json(h) not in owed]


def _gap_json(key: tuple) -> tuple:
    ticker, channel, session, detected = key
    return (ticker, channel, session, detected.isoformat())


def _gap_key(value: list) -> tuple:
    ticker, channel, session, detected = value
    return (ticker, channel, session, datetime.fromisoformat(detected))


class BackfillQueue:
    """Trade holes waiting for their REST backfill, kept in `trade_backfills`.

    `enqueue()` stores a window (merged with a pending one it overlaps); the
    `run()` task takes due windows oldest first, one at a time (bounded: one
    REST backfill in flight, each attempt bounded by the REST client's own
    retries and `backfill_attempt_timeout_s`), and on success marks it done
    and closes its holes through the writer (after their open rows, in
    order); a window merged in during the attempt keeps the row pending
    (`_done`). A failed attempt is retried after a capped, doubling pause, for
    as long as the hole is open: across outages and restarts.
    """

    POLL_S = 1.0

    def __init__(self, *, rest: KalshiRest, writer, config):
        self.rest = rest
        self.writer = writer
        self.config = config
        self._wake = asyncio.Event()
        self._busy = False
        self._enqueuing = 0
        self._enqueued = 0  # windows queued so far (see run())
        self.pending = 0  # as last seen in the table
        self.stored = 0
        self.attempts = 0
        self.failures = 0

    @property
    def idle(self) -> bool:
        """Nothing pending, nothing in progress (for tests and shutdown)."""
        return self.pending == 0 and not self._busy and not self._enqueuing

    def _not_before(self, until: datetime) -> datetime:
        # Kalshi's REST may serve a trade a moment after the WebSocket
        # announced it, and live trades still in the writer are not stored yet.
        return until + BACKFILL_SETTLE + timedelta(seconds=2 * self.config.flush_seconds)

    async def enqueue(self, since: datetime, until: datetime, tickers=(), gaps=()) -> None:
        """Queue [since, until] (retried while PostgreSQL is away)."""
        gap_values = [list(_gap_json(tuple(g))) for g in gaps]
        self._enqueuing += 1
        try:
            delays = backoff_delays(initial=0.5, factor=2.0, maximum=self.config.db_retry_max)
            while True:
                try:
                    await run_db(_enqueue, since, until, sorted(tickers), gap_values,
                                 self._not_before(until))
                    break
                except DB_ERRORS as exc:
                    delay = next(delays)
                    logger.warning("backfill enqueue waits for PostgreSQL (%r); retry in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
            self.pending += 1
            self._enqueued += 1
            self._wake.set()
        finally:
            self._enqueuing -= 1

    async def enqueue_orphans(self, before: datetime, until: datetime) -> int:
        """Queue a backfill for every open trade hole left by an earlier run without one."""
        holes = await run_db(_orphan_trade_holes, before)
        if not holes:
            return 0
        margin = timedelta(seconds=self.config.backfill_margin_seconds)
        since = min(h[3] for h in holes) - margin
        await self.enqueue(since, until, (), holes)
        logger.info("backfill queued %d open trade holes left by earlier runs since=%s",
                    len(holes), since.isoformat())
        return len(holes)

    async def run(self) -> None:
        """Carry out due backfills forever (cancel to stop)."""
        delays: dict[int, object] = {}
        while True:
            try:
                now = datetime.now(timezone.utc)
                enqueued = self._enqueued
                due = await run_db(_due, now, 10)
                pending = await run_db(_pending_count)
                # A window queued while counting may be missing from the count:
                # then keep the raised figure until the next count, or `idle`
                # would say "nothing pending" while a hole waits for its backfill.
                if self._enqueued == enqueued:
                    self.pending = pending
            except DB_ERRORS as exc:
                logger.warning("backfill queue waits for PostgreSQL (%r)", exc)
                await self._sleep(self.POLL_S * 5)
                continue
            for item in due:
                self._busy = True
                try:
                    await self._attempt(item, delays)
                except DB_ERRORS as exc:
                    logger.warning("backfill id=%s waits for PostgreSQL (%r)", item.id, exc)
                    break
                finally:
                    self._busy = False
            if not due:
                await self._sleep(self.POLL_S)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _attempt(self, item: TradeBackfill, delays: dict) -> None:
        self.attempts += 1
        try:
            result = await asyncio.wait_for(
                trades_backfill(self.rest, start=item.since, end=item.until,
                                tickers=list(item.market_tickers) or None),
                self.config.backfill_attempt_timeout_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried for as long as the hole is open
            pause = delays.setdefault(item.id, backoff_delays(
                initial=self.config.backfill_retry_initial, factor=2.0,
                maximum=self.config.backfill_retry_max,
            ))
            wait = next(pause)
            logger.warning(
                "backfill failed id=%s window=%s..%s attempt=%d error=%r; retry in %.1fs",
                item.id, item.since.isoformat(), item.until.isoformat(), item.attempts + 1, exc, wait,
            )
            retry_at = datetime.now(timezone.utc) + timedelta(seconds=wait)
            try:
                await run_db(_failed, item.id, item.attempts + 1, repr(exc), retry_at)
            except DB_ERRORS:
                pass  # still pending in the table; retried when PostgreSQL is back
            self.failures += 1  # counted once recorded, so a watcher never sees a failure the table lacks
            return
        now = datetime.now(timezone.utc)
        done = await run_db(_done, item, result.stored, now)
        delays.pop(item.id, None)
        self.stored += result.stored
        for gap in item.gaps:
            ticker, channel, session, detected = _gap_key(gap)
            self.writer.close_gap_key(ticker, channel, session, detected, now)
        logger.info("backfill %s id=%s stored=%d closed_holes=%d", "done" if done else
                    "fetched; more holes were merged in meanwhile, fetching again",
                    item.id, result.stored, len(item.gaps))
