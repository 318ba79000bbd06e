"""What the simulated exchange lists: series, events, markets and trades.

Plain mutable records owned by the exchange engine (exchange.py). They hold
exact Decimals and millisecond timestamps; how they look on the wire is
wire.py's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ONE = Decimal(1)

# Kalshi's price level structures used here, as (start, end, step) bands in
# dollars. Sub-cent grids exist on Kalshi; tapered_deci_cent is finer near
# the edges of the price range, like the real one.
PRICE_STRUCTURES: dict[str, tuple[tuple[Decimal, Decimal, Decimal], ...]] = {
    "linear_cent": ((Decimal("0.0000"), ONE, Decimal("0.0100")),),
    "deci_cent": ((Decimal("0.0000"), ONE, Decimal("0.0010")),),
    "tapered_deci_cent": (
        (Decimal("0.0000"), Decimal("0.1000"), Decimal("0.0010")),
        (Decimal("0.1000"), Decimal("0.9000"), Decimal("0.0100")),
        (Decimal("0.9000"), ONE, Decimal("0.0010")),
    ),
}

_GRID_CACHE: dict[str, tuple[Decimal, ...]] = {}


def price_grid(structure: str) -> tuple[Decimal, ...]:
    """Every valid price strictly between 0 and 1 for a structure, ascending."""
    if structure not in _GRID_CACHE:
        prices = set()
        for start, end, step in PRICE_STRUCTURES[structure]:
            price = start
            while price <= end:
                if 0 < price < ONE:
                    prices.add(price.quantize(Decimal("0.0001")))
                price += step
        _GRID_CACHE[structure] = tuple(sorted(prices))
    return _GRID_CACHE[structure]


@dataclass
class Series:
    ticker: str
    title: str
    category: str
    frequency: str
    tags: list[str]
    fee_type: str
    fee_multiplier: Decimal
    updated_ms: int


@dataclass
class Event:
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    mutually_exclusive: bool
    collateral_return_type: str
    strike_date_ms: int
    created_ms: int
    order: int  # creation order: the REST listing order
    fee_type_override: str | None = None
    fee_multiplier_override: Decimal | None = None
    multivariate: bool = False  # a combo event: left out of /events


@dataclass
class Market:
    ticker: str
    event_ticker: str
    series_ticker: str
    market_id: str
    title: str
    yes_sub_title: str
    no_sub_title: str
    rules_primary: str
    strike_type: str
    floor_strike: int
    status: str  # Kalshi's REST status: active, inactive, closed, determined, finalized
    created_ms: int
    open_ms: int
    close_ms: int
    expected_expiration_ms: int
    latest_expiration_ms: int
    price_level_structure: str
    fractional: bool
    order: int
    updated_ms: int
    fair: Decimal = Decimal("0.5000")  # the engine's hidden fair YES price
    result: str = ""
    settlement_value: Decimal | None = None
    determined_ms: int | None = None
    settled_ms: int | None = None
    last_price: Decimal | None = None
    last_trade_size: Decimal = Decimal("0.00")
    volume: Decimal = Decimal("0.00")
    open_interest: Decimal = Decimal("0.00")
    can_close_early: bool = True
    # Combo markets only: what REST shows, and why their lifecycle goes on
    # multivariate_market_lifecycle.
    mve_collection_ticker: str | None = None
    mve_selected_legs: list | None = None

    @property
    def is_combo(self) -> bool:
        return self.mve_collection_ticker is not None

    @property
    def price_ranges(self) -> tuple[tuple[Decimal, Decimal, Decimal], ...]:
        return PRICE_STRUCTURES[self.price_level_structure]

    @property
    def tradable(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class Trade:
    """One execution. `taker_outcome_side` yes = the taker bought YES."""

    trade_id: str
    market_ticker: str
    yes_price: Decimal
    no_price: Decimal
    count: Decimal
    taker_outcome_side: str
    is_block_trade: bool
    ts_ms: int
    index: int = field(compare=False)  # global order of execution

    @property
    def taker_book_side(self) -> str:
        return "bid" if self.taker_outcome_side == "yes" else "ask"
