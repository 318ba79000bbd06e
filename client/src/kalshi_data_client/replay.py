"""The replay stream's lines, and the books they build (shared by both clients)."""

from __future__ import annotations

import json
from typing import Any

from ._convert import convert_record
from .book import OrderBook
from .errors import StreamError


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """One NDJSON line as an event; None for the `end` line; StreamError for `error`."""
    event = json.loads(line)
    kind = event.get("type")
    if kind == "end":
        return None
    if kind == "error":
        raise StreamError(event.get("message", "The stream failed."), event.get("request_id"))
    return convert_record(event)


def cut_short() -> StreamError:
    return StreamError("The stream ended without its `end` line: it was cut short.")


class Books:
    """Every market's book, kept by applying events in stream order.

    A `snapshot` replaces the market's book (the opening one says whether it
    is `complete`), a `delta` adds to one level, a `gap` on the order-book
    channel marks the book incomplete until the next snapshot of the market
    re-baselines it; a channel-wide gap (empty `market_ticker`) marks every
    book. These are the server's rules, so the books equal `/orderbook`.
    """

    def __init__(self) -> None:
        self.books: dict[str, OrderBook] = {}

    def apply(self, event: dict[str, Any]) -> OrderBook | None:
        """Apply one event; return the book of its market (None if it has none yet)."""
        kind, ticker = event.get("type"), event.get("market_ticker") or ""
        if kind == "snapshot":
            book = self.books.setdefault(ticker, OrderBook())
            book.replace(event.get("yes"), event.get("no"))
            book.complete = bool(event.get("complete", True))
            return book
        if kind == "delta":
            book = self.books.setdefault(ticker, OrderBook(complete=False))
            book.apply_delta(event["side"], event["price"], event["delta"])
            return book
        if kind == "gap" and str(event.get("channel", "")).startswith("orderbook"):
            targets = [self.books[ticker]] if ticker in self.books else (
                [] if ticker else list(self.books.values()))
            for book in targets:
                book.complete = False
        return self.books.get(ticker)
