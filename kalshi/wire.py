"""How Kalshi's records look on its wire: pure rendering, shared by both sides.

The simulator renders what it sends with these functions, and the
collector's parser (kalshi/messages.py) reads the same shapes, so the two
cannot drift apart. Nothing here knows the simulator: every function takes
plain values or objects with the attributes of the small protocols below.

Three formats (PROTOCOL.md section 7):
  * "current" (default): fixed-point strings, prices in dollars with 4
    decimals ("0.5600"), counts with 2 ("136.00"), as sent since 2026-03-12.
  * "legacy": integer cents and integer counts only, as sent before the
    dollar and fixed-point fields were added (old archives, old venues).

WebSocket functions return the `msg` body; the sender adds type/sid/seq/id.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Protocol, Sequence

from markets.fixedpoint import format_count, format_price

ONE = Decimal(1)


class Book(Protocol):
    """Bids-only book in no-leg prices (markets.book.OrderBook is one)."""

    def levels(self, side: str) -> Sequence[tuple[Decimal, Decimal]]: ...
    def best_bid(self, side: str) -> tuple[Decimal, Decimal] | None: ...
    def best_ask(self, side: str) -> tuple[Decimal, Decimal] | None: ...


class Market(Protocol):
    ticker: str
    event_ticker: str
    market_id: str
    title: str
    yes_sub_title: str
    no_sub_title: str
    rules_primary: str
    strike_type: str
    floor_strike: int
    status: str
    created_ms: int
    open_ms: int
    close_ms: int
    updated_ms: int
    expected_expiration_ms: int
    latest_expiration_ms: int
    settled_ms: int | None
    price_level_structure: str
    price_ranges: Sequence[tuple[Decimal, Decimal, Decimal]]  # (start, end, step)
    fractional: bool
    can_close_early: bool
    result: str
    settlement_value: Decimal | None
    last_price: Decimal | None
    last_trade_size: Decimal
    volume: Decimal
    open_interest: Decimal
    is_combo: bool
    mve_collection_ticker: str | None
    mve_selected_legs: list | None


class Event(Protocol):
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    mutually_exclusive: bool
    collateral_return_type: str
    strike_date_ms: int
    created_ms: int


class Series(Protocol):
    ticker: str
    title: str
    category: str
    frequency: str
    tags: list[str]
    fee_type: str
    fee_multiplier: Decimal
    updated_ms: int


class Trade(Protocol):
    trade_id: str
    market_ticker: str
    yes_price: Decimal
    no_price: Decimal
    count: Decimal
    taker_outcome_side: str
    taker_book_side: str
    is_block_trade: bool
    ts_ms: int


class BookDelta(Protocol):
    side: str
    price: Decimal
    delta: Decimal
    ts_ms: int


class MarketLifecycle(Protocol):
    market_ticker: str
    event_type: str
    fields: dict


class EventFeeUpdate(Protocol):
    event_ticker: str
    fee_type_override: str | None
    fee_multiplier_override: Decimal | None


CURRENT = "current"
LEGACY = "legacy"
FORMATS = (CURRENT, LEGACY)


def iso(ms: int | None) -> str | None:
    """RFC 3339 UTC, with milliseconds when there are any."""
    if ms is None:
        return None
    seconds, millis = divmod(ms, 1000)
    if millis:
        return _iso_second(seconds) + f".{millis:03d}Z"
    return _iso_second(seconds) + "Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    # Every delta carries its second: formatting it once per second, not per
    # frame, was a sixth of the replay's CPU (bench/replay_bench.py).
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def cents(price: Decimal) -> int:
    return int(price * 100)


def _ws_price(side: str, price: Decimal, use_yes_price: bool) -> Decimal:
    """No-side prices in yes-leg pricing when the subscription asked for it."""
    return ONE - price if use_yes_price and side == "no" else price


# -- WebSocket message bodies -------------------------------------------------


def snapshot_msg(market: Market, book: Book, *, use_yes_price: bool, fmt: str) -> dict:
    """An orderbook_snapshot body; a side without bids is left out entirely."""
    msg: dict = {"market_ticker": market.ticker, "market_id": market.market_id}
    for side in ("yes", "no"):
        # Descending (best bid first), the order seen from Kalshi's WebSocket.
        levels = [(_ws_price(side, p, use_yes_price), s) for p, s in book.levels(side)]
        if not levels:
            continue
        if fmt == LEGACY:
            msg[side] = [[cents(p), int(s)] for p, s in levels]
        else:
            msg[f"{side}_dollars_fp"] = [[format_price(p), format_count(s)] for p, s in levels]
    return msg


def delta_msg(market: Market, delta: BookDelta, *, use_yes_price: bool, fmt: str) -> dict:
    price = _ws_price(delta.side, delta.price, use_yes_price)
    msg: dict = {"market_ticker": market.ticker, "market_id": market.market_id}
    if fmt == LEGACY:
        msg.update(
            price=cents(price),
            delta=int(delta.delta),
            side=delta.side,
            ts=iso(delta.ts_ms - delta.ts_ms % 1000),
        )
    else:
        msg.update(
            price_dollars=format_price(price),
            delta_fp=format_count(delta.delta),
            side=delta.side,
            ts=iso(delta.ts_ms - delta.ts_ms % 1000),
            ts_ms=delta.ts_ms,
        )
    return msg


def trade_msg(trade: Trade, *, fmt: str) -> dict:
    if fmt == LEGACY:
        return {
            "trade_id": trade.trade_id,
            "market_ticker": trade.market_ticker,
            "yes_price": cents(trade.yes_price),
            "no_price": cents(trade.no_price),
            "count": int(trade.count),
            "taker_side": trade.taker_outcome_side,
            "ts": trade.ts_ms // 1000,
        }
    return {
        "trade_id": trade.trade_id,
        "market_ticker": trade.market_ticker,
        "yes_price_dollars": format_price(trade.yes_price),
        "no_price_dollars": format_price(trade.no_price),
        "count_fp": format_count(trade.count),
        "taker_side": trade.taker_outcome_side,
        "taker_outcome_side": trade.taker_outcome_side,
        "taker_book_side": trade.taker_book_side,
        "is_block_trade": trade.is_block_trade,
        "ts": trade.ts_ms // 1000,
        "ts_ms": trade.ts_ms,
    }


def ticker_msg(market: Market, book: Book, ts_ms: int, *, fmt: str) -> dict:
    """A `ticker` body: the market's top of book, last price, volume (no seq)."""
    yes_bid = book.best_bid("yes")
    yes_ask = book.best_ask("yes")
    last = market.last_price or Decimal(0)
    if fmt == LEGACY:
        return {
            "market_ticker": market.ticker,
            "market_id": market.market_id,
            "price": cents(last),
            "yes_bid": cents(yes_bid[0]) if yes_bid else 0,
            "yes_ask": cents(yes_ask[0]) if yes_ask else 100,
            "volume": int(market.volume),
            "open_interest": int(market.open_interest),
            "dollar_volume": int(market.volume * last),
            "dollar_open_interest": int(market.open_interest * last),
            "ts": ts_ms // 1000,
        }
    return {
        "market_id": market.market_id,
        "market_ticker": market.ticker,
        "price_dollars": format_price(last),
        "yes_bid_dollars": format_price(yes_bid[0] if yes_bid else Decimal(0)),
        "yes_ask_dollars": format_price(yes_ask[0] if yes_ask else ONE),
        "volume_fp": format_count(market.volume),
        "open_interest_fp": format_count(market.open_interest),
        "dollar_volume": int(market.volume * last),
        "dollar_open_interest": int(market.open_interest * last),
        "yes_bid_size_fp": format_count(yes_bid[1] if yes_bid else Decimal(0)),
        "yes_ask_size_fp": format_count(yes_ask[1] if yes_ask else Decimal(0)),
        "last_trade_size_fp": format_count(market.last_trade_size),
        "ts": ts_ms // 1000,
        "ts_ms": ts_ms,
        "time": iso(ts_ms - ts_ms % 1000),
    }


def created_msg(market: Market) -> dict:
    """The market_lifecycle_v2 `created` body, with its additional_metadata."""
    return {
        "market_ticker": market.ticker,
        "event_type": "created",
        "exchange_index": 0,
        "open_ts": market.open_ms // 1000,
        "close_ts": market.close_ms // 1000,
        "price_level_structure": market.price_level_structure,
        "price_ranges": price_ranges(market),
        "additional_metadata": {
            "name": market.title,
            "title": market.title,
            "yes_sub_title": market.yes_sub_title,
            "no_sub_title": market.no_sub_title,
            "rules_primary": market.rules_primary,
            "rules_secondary": "",
            "can_close_early": market.can_close_early,
            "event_ticker": market.event_ticker,
            "expected_expiration_ts": market.expected_expiration_ms // 1000,
            "strike_type": market.strike_type,
            "floor_strike": market.floor_strike,
        },
    }


def lifecycle_msg(change: MarketLifecycle) -> dict:
    return {"market_ticker": change.market_ticker, "event_type": change.event_type, **change.fields}


def event_lifecycle_msg(event: Event) -> dict:
    return {
        "event_ticker": event.event_ticker,
        "exchange_index": 0,
        "title": event.title,
        "subtitle": event.sub_title,
        "collateral_return_type": event.collateral_return_type,
        "series_ticker": event.series_ticker,
        "strike_date": event.strike_date_ms // 1000,
    }


def fee_update_msg(update: EventFeeUpdate) -> dict:
    multiplier = update.fee_multiplier_override
    return {
        "event_ticker": update.event_ticker,
        "fee_type_override": update.fee_type_override,
        "fee_multiplier_override": float(multiplier) if multiplier is not None else None,
    }


def price_ranges(market: Market) -> list[dict]:
    return [
        {"start": format_price(s), "end": format_price(e), "step": format_price(st)}
        for s, e, st in market.price_ranges
    ]


# -- REST bodies --------------------------------------------------------------


def market_json(market: Market, book: Book, *, fmt: str) -> dict:
    """A REST `Market`, with every field openapi 3.13 requires."""
    yes_bid = book.best_bid("yes")
    no_bid = book.best_bid("no")
    yes_ask = book.best_ask("yes")
    no_ask = book.best_ask("no")
    zero, last = Decimal(0), market.last_price or Decimal(0)
    body = {
        "ticker": market.ticker,
        "event_ticker": market.event_ticker,
        "market_type": "binary",
        "title": market.title,
        "subtitle": "",
        "yes_sub_title": market.yes_sub_title,
        "no_sub_title": market.no_sub_title,
        "created_time": iso(market.created_ms),
        "updated_time": iso(market.updated_ms),
        "open_time": iso(market.open_ms),
        "close_time": iso(market.close_ms),
        "expected_expiration_time": iso(market.expected_expiration_ms),
        "expiration_time": iso(market.latest_expiration_ms),
        "latest_expiration_time": iso(market.latest_expiration_ms),
        "settlement_timer_seconds": 60,
        "status": market.status,
        "result": market.result,
        "can_close_early": market.can_close_early,
        "expiration_value": "",
        "rules_primary": market.rules_primary,
        "rules_secondary": "",
        "strike_type": market.strike_type,
        "floor_strike": market.floor_strike,
        "price_level_structure": market.price_level_structure,
        "price_ranges": price_ranges(market),
    }
    if market.is_combo:
        body.update(mve_collection_ticker=market.mve_collection_ticker, mve_selected_legs=market.mve_selected_legs)
    if fmt == LEGACY:
        body.update(
            yes_bid=cents(yes_bid[0]) if yes_bid else 0,
            yes_ask=cents(yes_ask[0]) if yes_ask else 100,
            no_bid=cents(no_bid[0]) if no_bid else 0,
            no_ask=cents(no_ask[0]) if no_ask else 100,
            last_price=cents(last),
            previous_yes_bid=0,
            previous_yes_ask=100,
            previous_price=0,
            volume=int(market.volume),
            volume_24h=int(market.volume),
            open_interest=int(market.open_interest),
            liquidity=0,
            notional_value=100,
            tick_size=1,
            risk_limit_cents=0,
            response_price_units="usd_cent",
            category="",
        )
        if market.settlement_value is not None:
            body["settlement_value"] = cents(market.settlement_value)
    else:
        body.update(
            yes_bid_dollars=format_price(yes_bid[0] if yes_bid else zero),
            yes_ask_dollars=format_price(yes_ask[0] if yes_ask else ONE),
            no_bid_dollars=format_price(no_bid[0] if no_bid else zero),
            no_ask_dollars=format_price(no_ask[0] if no_ask else ONE),
            yes_bid_size_fp=format_count(yes_bid[1] if yes_bid else zero),
            yes_ask_size_fp=format_count(yes_ask[1] if yes_ask else zero),
            last_price_dollars=format_price(last),
            previous_yes_bid_dollars=format_price(zero),
            previous_yes_ask_dollars=format_price(ONE),
            previous_price_dollars=format_price(zero),
            notional_value_dollars=format_price(ONE),
            volume_fp=format_count(market.volume),
            volume_24h_fp=format_count(market.volume),
            open_interest_fp=format_count(market.open_interest),
            liquidity_dollars=format_price(zero),
            fractional_trading_enabled=market.fractional,
        )
        if market.settlement_value is not None:
            body["settlement_value_dollars"] = format_price(market.settlement_value)
    if market.settled_ms is not None:
        body["settlement_ts"] = iso(market.settled_ms)
    return body


def orderbook_json(book: Book, *, depth: int, fmt: str) -> dict:
    """REST order book: ascending, best bid last; both keys always present."""
    sides = {}
    for side in ("yes", "no"):
        levels = book.levels(side, depth or None)[::-1]
        if fmt == LEGACY:
            sides[side] = [[cents(p), int(s)] for p, s in levels]
        else:
            sides[f"{side}_dollars"] = [[format_price(p), format_count(s)] for p, s in levels]
    return {"orderbook": sides} if fmt == LEGACY else {"orderbook_fp": sides}


def trade_json(trade: Trade, *, fmt: str) -> dict:
    body = {
        "trade_id": trade.trade_id,
        "ticker": trade.market_ticker,
        "taker_side": trade.taker_outcome_side,
        "created_time": iso(trade.ts_ms),
    }
    if fmt == LEGACY:
        body.update(yes_price=cents(trade.yes_price), no_price=cents(trade.no_price), count=int(trade.count))
    else:
        body.update(
            count_fp=format_count(trade.count),
            yes_price_dollars=format_price(trade.yes_price),
            no_price_dollars=format_price(trade.no_price),
            taker_outcome_side=trade.taker_outcome_side,
            taker_book_side=trade.taker_book_side,
            is_block_trade=trade.is_block_trade,
        )
    return body


def event_json(event: Event, markets: list[dict] | None = None) -> dict:
    body = {
        "event_ticker": event.event_ticker,
        "series_ticker": event.series_ticker,
        "title": event.title,
        "sub_title": event.sub_title,
        "collateral_return_type": event.collateral_return_type,
        "mutually_exclusive": event.mutually_exclusive,
        "available_on_brokers": False,
        "product_metadata": None,
        "strike_date": iso(event.strike_date_ms),
        "last_updated_ts": iso(event.created_ms),
    }
    if markets is not None:
        body["markets"] = markets
    return body


def series_json(series: Series, *, volume: Decimal | None = None) -> dict:
    body = {
        "ticker": series.ticker,
        "frequency": series.frequency,
        "title": series.title,
        "category": series.category,
        "tags": list(series.tags),
        "settlement_sources": [{"name": "Simulated source", "url": "https://example.com/source"}],
        "contract_url": "https://example.com/contract.pdf",
        "contract_terms_url": "https://example.com/terms.pdf",
        "fee_type": series.fee_type,
        "fee_multiplier": float(series.fee_multiplier),
        "additional_prohibitions": [],
        "last_updated_ts": iso(series.updated_ms),
    }
    if volume is not None:
        body["volume_fp"] = format_count(volume)
    return body
