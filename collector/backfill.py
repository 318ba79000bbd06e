"""Fetch trades after the fact from Kalshi's REST API and store the ones we lack.

Trades, unlike books, can be recovered: GET /markets/trades serves the live
tier and GET /historical/trades everything created before the cutoff
(GET /historical/cutoff `trades_created_ts`); a trade lives in exactly one
of them, so a window that straddles the cutoff is split in two. Rows are
stored with `trades_ingest_new_ids`, which skips any trade whose id is
already stored for that market: what the live collector recorded is never
duplicated, even when REST stamps it with a different precision.

Both `manage.py backfill_trades` and the live collector (after a gap on the
trade channel) call `trades_backfill`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable

from markets.fixedpoint import parse_count, parse_price, price_from_cents
from markets.ingest import trades_ingest_new_ids
from markets.services import parse_time

from .db import run_db
from .rest import KalshiRest

logger = logging.getLogger(__name__)

INGEST_BATCH = 1000  # one page of trades; one COPY per page


@dataclass
class BackfillResult:
    fetched: int = 0
    stored: int = 0
    pages: dict[str, int] = field(default_factory=lambda: {"live": 0, "historical": 0})


def trade_row(trade: dict, *, source: str, received_at: datetime) -> tuple:
    """A REST `Trade` object as a row in markets.ingest.TRADE_COLUMNS order.

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
