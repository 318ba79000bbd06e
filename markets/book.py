"""The order book of one market: pure state, no I/O.

The same class keeps the collector's live books (from which it writes
checkpoint snapshots) and rebuilds books for the API at any instant, so the
two can never disagree about what a delta means.

Kalshi's book is bids only, on both sides: `yes` holds resting orders to buy
YES and `no` resting orders to buy NO, each keyed by its own price (no-leg
pricing). The implied asks are 1 - the other side's best bid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Sequence

from .fixedpoint import ONE_DOLLAR, format_count, format_price, parse_count, parse_price

Level = tuple[Decimal, Decimal]  # (price, size)


@dataclass
class OrderBook:
    """Resting size per price on each side; a level that nets to <= 0 is removed."""

    yes: dict[Decimal, Decimal] = field(default_factory=dict)
    no: dict[Decimal, Decimal] = field(default_factory=dict)
    # How many deltas drove a level below zero: a sign of a missed message.
    negative_levels: int = 0

    # -- building -----------------------------------------------------------

    @classmethod
    def from_levels(cls, yes: Iterable[Sequence], no: Iterable[Sequence]) -> "OrderBook":
        """A book from [price, size] pairs (strings, numbers or Decimals)."""
        book = cls()
        book.replace(yes, no)
        return book

    def replace(self, yes: Iterable[Sequence], no: Iterable[Sequence]) -> None:
        """Replace both sides with a snapshot's levels; a missing side is empty."""
        self.yes = _side_from_levels(yes)
        self.no = _side_from_levels(no)

    def apply_delta(self, side: str, price: Decimal, delta: Decimal) -> Decimal:
        """Add the signed `delta` at (`side`, `price`); return the new size."""
        levels = self.yes if side == "yes" else self.no
        size = levels.get(price, Decimal(0)) + delta
        if size > 0:
            levels[price] = size
        else:
            if size < 0:
                self.negative_levels += 1
            levels.pop(price, None)
            size = Decimal(0)
        return size

    def copy(self) -> "OrderBook":
        return OrderBook(dict(self.yes), dict(self.no), self.negative_levels)

    # -- reading ------------------------------------------------------------

    def levels(self, side: str, depth: int | None = None) -> list[Level]:
        """The side's levels, best (highest) bid first, at most `depth` of them."""
        levels = self.yes if side == "yes" else self.no
        ordered = sorted(levels.items(), reverse=True)
        return ordered if depth is None else ordered[:depth]

    def best_bid(self, side: str) -> Level | None:
        levels = self.yes if side == "yes" else self.no
        if not levels:
            return None
        price = max(levels)
        return price, levels[price]

    def best_ask(self, side: str) -> Level | None:
        """The implied ask of `side`: 1 - the other side's best bid, at its size."""
        other = self.best_bid("no" if side == "yes" else "yes")
        if other is None:
            return None
        return ONE_DOLLAR - other[0], other[1]

    def snapshot_levels(self) -> tuple[list[list[str]], list[list[str]]]:
        """Both sides as [price, size] strings, ascending (best bid last), as stored."""
        return _side_to_strings(self.yes), _side_to_strings(self.no)

    def __eq__(self, other) -> bool:
        if not isinstance(other, OrderBook):
            return NotImplemented
        return self.yes == other.yes and self.no == other.no


def _side_from_levels(levels: Iterable[Sequence] | None) -> dict[Decimal, Decimal]:
    side: dict[Decimal, Decimal] = {}
    for price, size in levels or ():
        size = parse_count(size)
        if size > 0:
            side[parse_price(price)] = size
    return side


def _side_to_strings(side: dict[Decimal, Decimal]) -> list[list[str]]:
    return [[format_price(p), format_count(s)] for p, s in sorted(side.items())]
