"""What the pipeline asks the I/O layer to do, as plain data.

The pipeline (collector/pipeline.py) never touches the network: when a frame
means that something must be sent or fetched, `Pipeline.handle()` returns one
of these and the WebSocket/REST side carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class Command:
    pass


@dataclass(frozen=True)
class RequestSnapshots(Command):
    """After an order-book gap: send `update_subscription` `get_snapshot` on
    `sid` for these tickers. Their deltas are dropped until the snapshot
    arrives; the snapshot ends the gap (recovered_at is set)."""

    sid: int
    market_tickers: tuple[str, ...]


@dataclass(frozen=True)
class Resubscribe(Command):
    """Kalshi ended a subscription (terminal error 10/25): subscribe `channel`
    again for these tickers (empty: the whole channel, e.g. trade or
    lifecycle). The pipeline has discarded the old sid's books."""

    channel: str
    market_tickers: tuple[str, ...]


@dataclass(frozen=True)
class BackfillTrades(Command):
    """Trades may be missing between `since` and `until` (a gap or a break on
    the trade channel): fetch them from REST GET /markets/trades and store
    them with markets.ingest.trades_ingest_new_ids. Both bounds are inclusive
    and already widened by the pipeline; `market_tickers` empty means every
    market the trade subscription covered. `gaps` are the keys
    (market_ticker, channel, session_id, detected_at) of the trade holes
    that stay open until this backfill has succeeded."""

    since: datetime
    until: datetime
    market_tickers: tuple[str, ...] = ()
    gaps: tuple[tuple, ...] = ()


@dataclass(frozen=True)
class MarketCreated(Command):
    """Lifecycle `created`: fetch the market from REST, upsert it, subscribe its book."""

    market_ticker: str
    event_ticker: str | None
    payload: dict = field(compare=False, hash=False)


@dataclass(frozen=True)
class MarketDetermined(Command):
    """Lifecycle `determined`: confirm via REST GET /markets/{ticker}, upsert the Settlement."""

    market_ticker: str
    result: str | None
    settlement_value: Decimal | None
    determined_at: datetime | None


@dataclass(frozen=True)
class MarketSettled(Command):
    """Lifecycle `settled`: confirm via REST, upsert the Settlement, unsubscribe the book."""

    market_ticker: str
    settled_at: datetime | None


@dataclass(frozen=True)
class EventCreated(Command):
    """`event_lifecycle`: upsert the event, fetch its series if unknown."""

    event_ticker: str
    series_ticker: str | None
    payload: dict = field(compare=False, hash=False)
