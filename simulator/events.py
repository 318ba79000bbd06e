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


# -- replayed history only (simulator/recorded.py) ------------------------------


@dataclass(frozen=True)
class RecordedLifecycle:
    """A recorded lifecycle message, sent verbatim. `kind` is its Kalshi type:
    market_lifecycle_v2 (combo markets' go on multivariate_market_lifecycle),
    event_lifecycle or event_fee_update."""

    kind: str
    market_ticker: str
    msg: dict
    ts_ms: int


@dataclass(frozen=True)
class BookHole:
    """The record does not know these markets' books from now on: a client
    subscribed to any of them is disconnected, as our recorder was, and gets
    their snapshots only once the record has them again (BookRecovered)."""

    market_tickers: frozenset
    ts_ms: int


@dataclass(frozen=True)
class BookRecovered:
    """The record has this market's book again: every subscription to it gets a
    snapshot of `book` (as it stood at this event, not after the step's later deltas)."""

    market_ticker: str
    ts_ms: int
    book: object  # markets.book.OrderBook


@dataclass(frozen=True)
class ChannelHole:
    """Messages of a channel (trade, market_lifecycle_v2) were lost here by our
    recorder: each subscription to it skips a sequence number, as a loss looks
    on Kalshi."""

    channel: str
    ts_ms: int


ExchangeEvent = (
    BookDelta | TradeExecuted | EventCreated | MarketCreated | MarketLifecycle | EventFeeUpdate
    | RecordedLifecycle | BookHole | BookRecovered | ChannelHole
)
