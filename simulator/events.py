"""What happens on the simulated exchange, one record per happening.

The engine (exchange.py) returns these from each step; the WebSocket sessions
(session.py) turn them into Kalshi frames. They are the truth: faults change
only what is sent, never these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from .catalog import Event, Market, Trade


@dataclass(frozen=True)
class BookDelta:
    """A signed change at (side, price) of a market's bids-only book (no-leg prices)."""

    market_ticker: str
    side: str
    price: Decimal
    delta: Decimal
    ts_ms: int


@dataclass(frozen=True)
class TradeExecuted:
    trade: Trade


@dataclass(frozen=True)
class EventCreated:
    event: Event
    ts_ms: int


@dataclass(frozen=True)
class MarketCreated:
    market: Market
    ts_ms: int


@dataclass(frozen=True)
class MarketLifecycle:
    """Any other market_lifecycle_v2 message: `fields` are its extra keys, ready to send."""

    market_ticker: str
    event_type: str
    ts_ms: int
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EventFeeUpdate:
    event_ticker: str
    fee_type_override: str | None
    fee_multiplier_override: Decimal | None
    ts_ms: int


ExchangeEvent = BookDelta | TradeExecuted | EventCreated | MarketCreated | MarketLifecycle | EventFeeUpdate
