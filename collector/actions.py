"""Carry out the pipeline's commands that need REST or the database.

The WebSocket reader must never wait on a REST call or a query, so these
commands go through one queue to one worker, in order (a market's
determination is handled before its settlement):

* `MarketCreated`: store the lifecycle payload, fetch the market from REST
  (it may 404 for a moment after `created`), its event and unknown series;
  with a --series selection, subscribe the book once its series is known.
* `MarketDetermined` / `MarketSettled`: confirm through GET /markets/{ticker}
  and record the `Settlement` (the feed has already unsubscribed a settled
  market's book).
* `EventCreated`: upsert the event, fetch its series if unknown.
* `BackfillTrades`: after a gap on the trade channel, queue the window in
  the persistent retry queue (collector/backfill.py `BackfillQueue`), which
  fetches its trades from REST, stores those the live stream did not
  deliver, and only then closes the trade hole.

A database outage does not lose a command: it is retried with backoff until
the database is back. A REST failure is logged (the raw lifecycle message is
stored anyway) and the worker moves on.
"""

from __future__ import annotations

import asyncio
import logging

from django.db import DatabaseError, InterfaceError, OperationalError

from markets.models import Event
from markets.services import (
    event_upsert,
    market_upsert,
    market_upsert_from_lifecycle,
    parse_time,
    settlement_record,
)

from . import commands as cmd
from .config import CollectorConfig
from .db import run_db
from .discovery import event_fetch, series_fetch_missing
from .backoff import backoff_delays
from .rest import KalshiNotFound, KalshiRest, KalshiRestError

logger = logging.getLogger(__name__)

# GET /markets/{ticker} can 404 briefly after lifecycle `created`.
NEW_MARKET_LOOKUPS = 5
DB_ERRORS = (OperationalError, InterfaceError)


class Actions:
    """The worker behind the feed. `submit()` from the loop; `run()` as a task."""

    def __init__(self, *, rest: KalshiRest, selection, writer=None, config=None, backfills=None):
        self.rest = rest
        self.backfills = backfills  # the BackfillQueue
        self.selection = selection
        self.writer = writer
        self.config = config
        self.feed = None  # the KalshiFeed, which sets itself here
        self.queue: asyncio.Queue = asyncio.Queue()
        self._busy = False
        self.done = 0
        self.failed = 0
        self.settlements = 0

    def submit(self, command) -> None:
        self.queue.put_nowait(command)

    async def run(self) -> None:
        """Carry out commands one by one, forever (cancel to stop)."""
        while True:
            command = await self.queue.get()
            self._busy = True
            try:
                await self._with_db_retries(command)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad command must not stop the worker
                self.failed += 1
                logger.exception("actions failed command=%r", command)
            finally:
                self._busy = False
                self.queue.task_done()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in progress."""
        return self.queue.empty() and not self._busy

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the queue to empty; True if it did."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
            return True
        except TimeoutError:
            logger.warning("actions unfinished=%d at shutdown", self.queue.qsize())
            return False

    async def _with_db_retries(self, command) -> None:
        # The writer's pauses: after an outage the commands resume as soon as it does.
        config = self.config or CollectorConfig()
        delays = backoff_delays(initial=config.db_retry_initial, factor=2.0, maximum=config.db_retry_max)
        while True:
            try:
                await self.carry_out(command)
                self.done += 1
                return
            except DB_ERRORS as exc:
                delay = next(delays)
                logger.warning("actions db_unavailable command=%s error=%r retry_in_s=%.1f",
                               type(command).__name__, exc, delay)
                await asyncio.sleep(delay)
            except (KalshiRestError, DatabaseError, ValueError, KeyError) as exc:
                self.failed += 1
                logger.error("actions failed command=%r error=%r", command, exc)
                return

    async def carry_out(self, command) -> None:
        if isinstance(command, cmd.MarketCreated):
            await self._market_created(command)
        elif isinstance(command, cmd.MarketDetermined):
            await self._market_determined(command)
        elif isinstance(command, cmd.MarketSettled):
            await self._market_settled(command)
        elif isinstance(command, cmd.EventCreated):
            await self._event_created(command)
        elif isinstance(command, cmd.BackfillTrades):
            await self._backfill(command)
        else:
            logger.warning("actions unknown command=%r", command)

    # -- lifecycle ---------------------------------------------------------------

    async def _market_created(self, command) -> None:
        payload = dict(command.payload or {})
        payload.setdefault("market_ticker", command.market_ticker)
        payload.setdefault("event_type", "created")
        await run_db(lambda: market_upsert_from_lifecycle(payload=payload))
        market = await self._market_from_rest(command.market_ticker, attempts=NEW_MARKET_LOOKUPS)
        if market is not None:
            await run_db(lambda: market_upsert(data=market))
        event_ticker = command.event_ticker or (market or {}).get("event_ticker") or ""
        series_ticker = ""
        if event_ticker:
            series_ticker = await run_db(_series_of_event, event_ticker) or await event_fetch(
                self.rest, event_ticker
            ) or ""
            await series_fetch_missing(self.rest, [series_ticker])
        if self.selection.series and series_ticker in self.selection.series:
            await self.feed.add_markets([command.market_ticker])

    async def _market_determined(self, command) -> None:
        market = await self._market_from_rest(command.market_ticker)
        lifecycle = {
            "result": command.result,
            "settlement_value": _text(command.settlement_value),
            "determined_at": _text(command.determined_at),
        }
        result, value, rest_meta = command.result, command.settlement_value, None
        if market is not None:
            await run_db(lambda: market_upsert(data=market))
            rest_meta = _settlement_fields(market)
            result = market.get("result") or result
            value = market.get("settlement_value_dollars") or value
            if market.get("result") and command.result and market["result"] != command.result:
                logger.warning("settlement disagreement market=%s lifecycle=%s rest=%s",
                               command.market_ticker, command.result, market["result"])
        await run_db(lambda: settlement_record(
            market_ticker=command.market_ticker,
            result=result or "",
            settlement_value=value,
            determined_at=command.determined_at,
            event_ticker=(market or {}).get("event_ticker", ""),
            source="lifecycle",
            metadata={"determined": lifecycle, "rest_confirmed": market is not None, "rest": rest_meta},
        ))
        self.settlements += 1

    async def _market_settled(self, command) -> None:
        market = await self._market_from_rest(command.market_ticker)
        settled_at = command.settled_at
        result = value = None
        rest_meta = None
        if market is not None:
            await run_db(lambda: market_upsert(data=market))
            rest_meta = _settlement_fields(market)
            result = market.get("result") or None
            value = market.get("settlement_value_dollars") or None
            settled_at = settled_at or parse_time(market.get("settlement_ts"))
        await run_db(lambda: settlement_record(
            market_ticker=command.market_ticker,
            result=result or "",
            settlement_value=value,
            settled_at=settled_at,
            event_ticker=(market or {}).get("event_ticker", ""),
            source="lifecycle",
            metadata={"settled": {"settled_at": _text(command.settled_at)},
                      "rest_confirmed": market is not None, "rest": rest_meta},
        ))
        self.settlements += 1

    async def _event_created(self, command) -> None:
        payload = dict(command.payload or {})
        payload.setdefault("event_ticker", command.event_ticker)
        if command.series_ticker:
            payload.setdefault("series_ticker", command.series_ticker)
        await run_db(lambda: event_upsert(data=payload))
        await series_fetch_missing(self.rest, [payload.get("series_ticker", "")])

    async def _market_from_rest(self, ticker: str, *, attempts: int = 1) -> dict | None:
        delays = backoff_delays(initial=1.0, factor=2.0, maximum=10.0)
        for attempt in range(1, attempts + 1):
            try:
                return await self.rest.market(ticker)
            except KalshiNotFound:
                if attempt == attempts:
                    logger.warning("rest market=%s not found", ticker)
                    return None
                await asyncio.sleep(next(delays))
            except KalshiRestError as exc:
                logger.warning("rest market=%s unavailable error=%s", ticker, exc)
                return None
        return None

    # -- trades --------------------------------------------------------------------

    @property
    def trades_backfilled(self) -> int:
        return self.backfills.stored if self.backfills is not None else 0

    async def _backfill(self, command) -> None:
        # Queued, not run here: the queue retries it for as long as it
        # fails, and one slow backfill must not hold up settlements.
        await self.backfills.enqueue(command.since, command.until, command.market_tickers, command.gaps)


def _series_of_event(event_ticker: str) -> str:
    series = Event.objects.filter(event_ticker=event_ticker).values_list("series_ticker", flat=True)
    return series.first() or ""


def _settlement_fields(market: dict) -> dict:
    keys = ("status", "result", "settlement_value_dollars", "settlement_ts", "expiration_value")
    return {k: market.get(k) for k in keys if k in market}


def _text(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
