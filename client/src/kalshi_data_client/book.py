"""The order book of one market, with the server's rules (markets/book.py).

A copy, not an import: the client must install without the server. The
rules: a snapshot replaces both sides; a delta adds its signed size to one
level; a level that nets to <= 0 is removed (below zero counts in
`negative_levels`, the sign of a missed message). Kalshi's book is bids
only on both sides; the ask of one side is 1 - the other side's best bid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Sequence

ONE_DOLLAR = Decimal(1)
Level = tuple[Decimal, Decimal]  # (price, size)


@dataclass
class OrderBook:
    yes: dict[Decimal, Decimal] = field(default_factory=dict)
    no: dict[Decimal, Decimal] = field(default_factory=dict)
    negative_levels: int = 0
    # False from a recorded gap until the next snapshot of the market re-baselines it.
    complete: bool = True

    @classmethod
    def from_levels(cls, yes: Iterable[Sequence[object]],
                    no: Iterable[Sequence[object]]) -> "OrderBook":
        book = cls()
        book.replace(yes, no)
        return book

    def replace(self, yes: Iterable[Sequence[object]] | None,
                no: Iterable[Sequence[object]] | None) -> None:
        """Replace both sides with a snapshot's levels; a missing side is empty."""
        self.yes = _side(yes)
        self.no = _side(no)

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
        return OrderBook(dict(self.yes), dict(self.no), self.negative_levels, self.complete)

    def levels(self, side: str, depth: int | None = None) -> list[Level]:
        """The side's levels, best (highest) bid first, at most `depth` of them."""
        ordered = sorted((self.yes if side == "yes" else self.no).items(), reverse=True)
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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderBook):
            return NotImplemented
        return self.yes == other.yes and self.no == other.no


def _side(levels: Iterable[Sequence[object]] | None) -> dict[Decimal, Decimal]:
    side: dict[Decimal, Decimal] = {}
    for price, size in levels or ():
        amount = Decimal(str(size))
        if amount > 0:
            side[Decimal(str(price))] = amount
    return side
