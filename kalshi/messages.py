"""Kalshi WebSocket frames -> small typed messages. Pure: no I/O, no state.

`parse_frame(raw)` turns one text frame into one of the dataclasses below, or
raises `MalformedFrame` for anything it cannot read exactly. It accepts:

* the current fixed-point format (prices as dollar strings with up to 4
  decimals, counts as strings with 2), and the legacy integer format of old
  archives (integer cents, integer counts, 3-decimal dollar strings), always
  preferring `*_fp` / `*_dollars` when a frame carries both (PROTOCOL.md §7);
* numbers as strings or as JSON numbers. JSON numbers with a fraction are
  decoded exactly: a frame that holds one is decoded again with Decimal
  floats, so no value ever passes through binary floating point;
* a snapshot without a side's key: that side is empty, never "unchanged".

Messages for channels the recorder does not use (fills, orders, RFQs, CF
Benchmarks, ...) come back as `UnhandledMsg`, still with their sid and seq so
that sequencing stays exact. Speed matters (every frame goes through here):
decoding is orjson's, and prices/counts given as strings are interned in a
bounded cache because the same few thousand values repeat all day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

import orjson

from markets.fixedpoint import FixedPointError, parse_count, parse_price, price_from_cents

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE = Decimal(1)
_ZERO = Decimal(0)
# A contract pays at most $1, so every price is within [0, 1]; counts must
# fit the NUMERIC(18, 2) column. Anything else is a malformed frame here
# rather than a batch the database refuses later.
_MAX_COUNT = Decimal("1e16")
SIDES = ("yes", "no")


class MalformedFrame(ValueError):
    """A frame that is not valid JSON or not a message we can read exactly."""

    def __init__(self, reason: str, raw: str | bytes = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class _FloatSeen(Exception):
    """A JSON number with a fraction: decode the frame again exactly."""


# --- messages -------------------------------------------------------------
# Every message has type, sid, seq and id (None when the frame has none).


@dataclass(slots=True)
class Message:
    type: str
    sid: int | None
    seq: int | None
    id: int | None


@dataclass(slots=True)
class OrderbookSnapshotMsg(Message):
    market_ticker: str
    market_id: str | None
    yes: list[tuple[Decimal, Decimal]]  # (price, size), as sent (order unspecified)
    no: list[tuple[Decimal, Decimal]]
    legacy: bool  # read from integer cents/counts (no *_fp levels)


@dataclass(slots=True)
class OrderbookDeltaMsg(Message):
    market_ticker: str
    market_id: str | None
    side: str  # "yes" | "no"
    price: Decimal
    delta: Decimal  # signed change in resting size
    ts: datetime | None  # exchange time (ts_ms, else the deprecated ts)
    client_order_id: str | None
    legacy: bool


@dataclass(slots=True)
class TradeMsg(Message):
    trade_id: str
    market_ticker: str
    yes_price: Decimal
    no_price: Decimal
    count: Decimal
    taker_outcome_side: str | None
    taker_book_side: str | None
    taker_side: str | None  # deprecated by Kalshi, kept for old archives
    is_block_trade: bool
    ts: datetime
    legacy: bool


@dataclass(slots=True)
class MarketLifecycleMsg(Message):
    """market_lifecycle_v2 (or multivariate_market_lifecycle), any event_type."""

    market_ticker: str
    event_type: str
    event_ticker: str | None  # from additional_metadata on `created`
    result: str | None  # on `determined`
    settlement_value: Decimal | None  # on `determined` (dollars)
    ts: datetime | None  # determination_ts / settled_ts, when the message has one
    payload: dict


@dataclass(slots=True)
class EventLifecycleMsg(Message):
    event_ticker: str
    series_ticker: str | None
    payload: dict


@dataclass(slots=True)
class EventFeeUpdateMsg(Message):
    event_ticker: str
    payload: dict


@dataclass(slots=True)
class TickerMsg(Message):
    market_ticker: str
    ts: datetime | None
    payload: dict


@dataclass(slots=True)
class SubscribedMsg(Message):
    channel: str
    # `sid` (the new subscription's) is the common field, taken from msg.sid.


@dataclass(slots=True)
class OkMsg(Message):
    """An update_subscription `ok` (full ticker list after the change) or the
    list_subscriptions reply (its msg is an array of {channel, sid})."""

    market_tickers: list[str] | None
    subscriptions: list[tuple[str, int]] | None
    payload: dict | list | None


@dataclass(slots=True)
class UnsubscribedMsg(Message):
    pass


@dataclass(slots=True)
class ErrorMsg(Message):
    code: int
    text: str
    market_tickers: list[str]

    @property
    def terminal(self) -> bool:
        """Kalshi ended the subscription (10: channel error, 25: buffer overflow)."""
        return self.code in TERMINAL_ERROR_CODES


@dataclass(slots=True)
class UnhandledMsg(Message):
    """A well-formed frame of a type the recorder does not store."""

    payload: object


TERMINAL_ERROR_CODES = frozenset({10, 25})


# --- entry point ----------------------------------------------------------


def parse_frame(raw: str | bytes) -> Message:
    """One WebSocket text frame -> one message. Raises MalformedFrame."""
    try:
        data = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise MalformedFrame(f"not JSON: {exc}", raw) from None
    try:
        return _parse(data, raw)
    except _FloatSeen:
        pass
    # Rare: some number came as a JSON float. Decode the frame again with
    # Decimal for every fractional number, so nothing is rounded.
    try:
        data = json.loads(raw, parse_float=Decimal)
    except ValueError as exc:  # pragma: no cover - orjson accepted it
        raise MalformedFrame(f"not JSON: {exc}", raw) from None
    return _parse(data, raw)


def _parse(data, raw) -> Message:
    if not isinstance(data, dict):
        raise MalformedFrame("frame is not a JSON object", raw)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise MalformedFrame("frame has no string `type`", raw)
    get = data.get
    sid = get("sid")
    seq = get("seq")
    cmd_id = get("id")
    # Inline checks: this runs for every frame.
    if (
        (sid is not None and type(sid) is not int)
        or (seq is not None and type(seq) is not int)
        or (cmd_id is not None and type(cmd_id) is not int)
    ):
        for key in ("sid", "seq", "id"):
            _opt_int(data, key, raw)
    parser = _PARSERS.get(kind)
    if parser is None:
        return UnhandledMsg(kind, sid, seq, cmd_id, data.get("msg"))
    msg = data.get("msg")
    try:
        return parser(kind, sid, seq, cmd_id, msg)
    except _FloatSeen:
        raise
    except MalformedFrame as exc:
        exc.raw = raw
        raise
    except (FixedPointError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedFrame(f"bad {kind}: {type(exc).__name__}: {exc}", raw) from None


# --- per type -------------------------------------------------------------


def _snapshot(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    yes, legacy_yes = _levels(msg, "yes")
    no, legacy_no = _levels(msg, "no")
    return OrderbookSnapshotMsg(
        kind, sid, seq, cmd_id,
        _ticker(msg), _opt_str(msg, "market_id"),
        yes, no, legacy_yes or legacy_no,
    )


def _delta(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    side = msg["side"]
    if side not in SIDES:
        raise MalformedFrame(f"bad orderbook_delta side {side!r}")
    legacy = False
    value = msg.get("price_dollars")
    if value is not None:
        price = _price(value)
    else:
        price = _cents(msg["price"])
        legacy = True
    value = msg.get("delta_fp")
    if value is not None:
        delta = _count(value)
    else:
        delta = _count(msg["delta"])
        legacy = True
    ts_ms = msg.get("ts_ms")
    if ts_ms is not None:
        ts = _from_ms(ts_ms)
    else:
        ts = _rfc3339(msg.get("ts"))
    return OrderbookDeltaMsg(
        kind, sid, seq, cmd_id,
        _ticker(msg), _opt_str(msg, "market_id"),
        side, price, delta, ts, _opt_str(msg, "client_order_id"), legacy,
    )


def _trade(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    legacy = False
    value = msg.get("yes_price_dollars")
    if value is not None:
        yes_price = _price(value)
    else:
        legacy = True
        # Older frames called the YES price just `price`.
        cents = msg.get("yes_price", msg.get("price"))
        if cents is None:
            raise MalformedFrame("trade has no YES price")
        yes_price = _cents(cents)
    value = msg.get("no_price_dollars")
    if value is not None:
        no_price = _price(value)
    elif msg.get("no_price") is not None:
        no_price = _cents(msg["no_price"])
    else:
        no_price = _ONE - yes_price
    value = msg.get("count_fp")
    if value is not None:
        count = _count(value)
    else:
        count = _count(msg["count"])
        legacy = True
    ts = _exchange_time(msg)
    if ts is None:
        raise MalformedFrame("trade has no time (ts_ms / ts)")
    trade_id = msg["trade_id"]
    if not isinstance(trade_id, str) or not trade_id:
        raise MalformedFrame("trade has no trade_id")
    block = msg.get("is_block_trade", False)
    if not isinstance(block, bool):
        raise MalformedFrame(f"bad is_block_trade {block!r}")
    return TradeMsg(
        kind, sid, seq, cmd_id,
        trade_id, _ticker(msg), yes_price, no_price, count,
        _opt_str(msg, "taker_outcome_side"), _opt_str(msg, "taker_book_side"),
        _opt_str(msg, "taker_side"), block, ts, legacy,
    )


_LIFECYCLE_TS_KEY = {"determined": "determination_ts", "settled": "settled_ts"}


def _market_lifecycle(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    event_type = msg["event_type"]
    if not isinstance(event_type, str) or not event_type:
        raise MalformedFrame("lifecycle message has no event_type")
    metadata = msg.get("additional_metadata")
    event_ticker = metadata.get("event_ticker") if isinstance(metadata, dict) else None
    ts_key = _LIFECYCLE_TS_KEY.get(event_type)
    ts = _from_seconds(msg[ts_key]) if ts_key and msg.get(ts_key) is not None else None
    value = msg.get("settlement_value")
    if value is None and msg.get("settlement_value_dollars") is not None:
        value = msg["settlement_value_dollars"]
    settlement_value = _price(value) if value not in (None, "") else None
    result = msg.get("result")
    return MarketLifecycleMsg(
        kind, sid, seq, cmd_id,
        _ticker(msg), event_type, event_ticker,
        result if isinstance(result, str) else None, settlement_value, ts, msg,
    )


def _event_lifecycle(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    return EventLifecycleMsg(
        kind, sid, seq, cmd_id, _event_ticker(msg, kind), _opt_str(msg, "series_ticker"), msg)


def _event_fee_update(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    return EventFeeUpdateMsg(kind, sid, seq, cmd_id, _event_ticker(msg, kind), msg)


def _ticker_msg(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    return TickerMsg(kind, sid, seq, cmd_id, _ticker(msg), _exchange_time(msg), msg)


def _subscribed(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    channel = msg["channel"]
    if not isinstance(channel, str) or not channel:
        raise MalformedFrame("subscribed has no channel")
    new_sid = msg["sid"]
    if not _is_int(new_sid):
        raise MalformedFrame(f"subscribed has a bad sid {new_sid!r}")
    return SubscribedMsg(kind, new_sid, seq, cmd_id, channel)


def _ok(kind, sid, seq, cmd_id, msg):
    if isinstance(msg, list):
        subs = []
        for item in msg:
            if not isinstance(item, dict) or not _is_int(item.get("sid")):
                raise MalformedFrame("list_subscriptions entry without channel/sid")
            subs.append((str(item.get("channel", "")), item["sid"]))
        return OkMsg(kind, sid, seq, cmd_id, None, subs, msg)
    if msg is None:
        return OkMsg(kind, sid, seq, cmd_id, None, None, None)
    _need_dict(msg, kind)
    tickers = msg.get("market_tickers")
    if tickers is not None:
        if not isinstance(tickers, list) or not all(isinstance(t, str) for t in tickers):
            raise MalformedFrame("ok market_tickers is not a list of strings")
    return OkMsg(kind, sid, seq, cmd_id, tickers, None, msg)


def _unsubscribed(kind, sid, seq, cmd_id, msg):
    return UnsubscribedMsg(kind, sid, seq, cmd_id)


def _error(kind, sid, seq, cmd_id, msg):
    _need_dict(msg, kind)
    code = msg["code"]
    if not _is_int(code):
        raise MalformedFrame(f"error code is not an integer: {code!r}")
    tickers = msg.get("market_tickers")
    if not isinstance(tickers, list):
        tickers = []
    single = msg.get("market_ticker")
    if isinstance(single, str) and single and single not in tickers:
        tickers = [*tickers, single]
    text = msg.get("msg")
    return ErrorMsg(kind, sid, seq, cmd_id, code, text if isinstance(text, str) else "", tickers)


_PARSERS = {
    "orderbook_snapshot": _snapshot,
    "orderbook_delta": _delta,
    "trade": _trade,
    "market_lifecycle_v2": _market_lifecycle,
    "multivariate_market_lifecycle": _market_lifecycle,
    "event_lifecycle": _event_lifecycle,
    "event_fee_update": _event_fee_update,
    "ticker": _ticker_msg,
    "subscribed": _subscribed,
    "ok": _ok,
    "unsubscribed": _unsubscribed,
    "error": _error,
}


# --- fields ---------------------------------------------------------------


def _is_int(value) -> bool:
    return type(value) is int


def _opt_int(data: dict, key: str, raw):
    value = data.get(key)
    if value is None or type(value) is int:
        return value
    raise MalformedFrame(f"`{key}` is not an integer: {value!r}", raw)


def _need_dict(msg, kind) -> None:
    if not isinstance(msg, dict):
        raise MalformedFrame(f"{kind} without a msg object")


def _ticker(msg: dict) -> str:
    ticker = msg.get("market_ticker")
    if not isinstance(ticker, str) or not ticker:
        raise MalformedFrame("message has no market_ticker")
    return ticker


def _event_ticker(msg: dict, kind: str) -> str:
    event_ticker = msg["event_ticker"]
    if not isinstance(event_ticker, str) or not event_ticker:
        raise MalformedFrame(f"{kind} has no event_ticker")
    return event_ticker


def _opt_str(msg: dict, key: str) -> str | None:
    value = msg.get(key)
    return value if isinstance(value, str) else None


# Prices and counts sent as strings repeat endlessly; interning them skips
# Decimal construction and the exactness checks. Bounded: cleared when full.
_CACHE_LIMIT = 100_000
_price_cache: dict[str, Decimal] = {}
_count_cache: dict[str, Decimal] = {}


def _price(value) -> Decimal:
    if type(value) is str:
        cached = _price_cache.get(value)
        if cached is None:
            cached = _in_price_range(parse_price(value), value)
            if len(_price_cache) >= _CACHE_LIMIT:
                _price_cache.clear()
            _price_cache[value] = cached
        return cached
    if type(value) is float:
        raise _FloatSeen
    if type(value) is int or type(value) is Decimal:
        return _in_price_range(parse_price(value), value)
    raise MalformedFrame(f"price is not a number: {value!r}")


def _in_price_range(price: Decimal, value) -> Decimal:
    if not _ZERO <= price <= _ONE:
        raise MalformedFrame(f"price outside [0, 1] dollars: {value!r}")
    return price


def _in_count_range(count: Decimal, value) -> Decimal:
    if not -_MAX_COUNT < count < _MAX_COUNT:
        raise MalformedFrame(f"count out of range: {value!r}")
    return count


def _count(value) -> Decimal:
    if type(value) is str:
        cached = _count_cache.get(value)
        if cached is None:
            # Counts vary more than prices; Kalshi's own shape ("136.00") is
            # already exact to the cent, so it skips the general checks.
            if len(value) > 3 and value[-3] == "." and value[-2:].isdigit():
                try:
                    cached = Decimal(value)
                except InvalidOperation:
                    raise MalformedFrame(f"count is not a number: {value!r}") from None
            else:
                cached = parse_count(value)
            _in_count_range(cached, value)
            if len(_count_cache) >= _CACHE_LIMIT:
                _count_cache.clear()
            _count_cache[value] = cached
        return cached
    if type(value) is float:
        raise _FloatSeen
    if type(value) is int or type(value) is Decimal:
        return _in_count_range(parse_count(value), value)
    raise MalformedFrame(f"count is not a number: {value!r}")


def _cents(value) -> Decimal:
    if type(value) is float:
        raise _FloatSeen
    if type(value) is bool:
        raise MalformedFrame(f"price in cents is not a number: {value!r}")
    return _in_price_range(price_from_cents(value), value)


def _levels(msg: dict, side: str) -> tuple[list[tuple[Decimal, Decimal]], bool]:
    """A snapshot side: `<side>_dollars_fp`, else legacy `<side>_dollars`, else
    legacy `<side>` in cents; no key at all means no bids on that side."""
    levels = msg.get(f"{side}_dollars_fp")
    if levels is not None:
        return _pairs(levels, _price), False
    levels = msg.get(f"{side}_dollars")
    if levels is not None:
        return _pairs(levels, _price), True
    levels = msg.get(side)
    if levels is not None:
        return _pairs(levels, _cents), True
    return [], False


def _pairs(levels, read_price) -> list[tuple[Decimal, Decimal]]:
    if not isinstance(levels, list):
        raise MalformedFrame("book side is not a list of levels")
    out = []
    for level in levels:
        if not isinstance(level, list) or len(level) != 2:
            raise MalformedFrame(f"book level is not a [price, count] pair: {level!r}")
        out.append((read_price(level[0]), _count(level[1])))
    return out


_last_ms: list = [None, None]  # one-entry cache: bursts share a timestamp


def _exchange_time(msg: dict) -> datetime | None:
    """`ts_ms`, else the older `ts` in whole seconds; None if neither is there."""
    ts_ms = msg.get("ts_ms")
    if ts_ms is not None:
        return _from_ms(ts_ms)
    if msg.get("ts") is not None:
        return _from_seconds(msg["ts"])
    return None


def _whole(value, error: str) -> int:
    """A JSON number that must be whole, as an int (an exact Decimal is accepted)."""
    if type(value) is float:
        raise _FloatSeen
    if type(value) is Decimal and value == value.to_integral_value():
        return int(value)
    raise MalformedFrame(f"{error}: {value!r}")


def _from_ms(value) -> datetime:
    if value == _last_ms[0] and type(value) is int:
        return _last_ms[1]
    if type(value) is not int:
        value = _whole(value, "ts_ms is not an integer")
    result = _EPOCH + timedelta(milliseconds=value)
    _last_ms[0], _last_ms[1] = value, result
    return result


def _from_seconds(value) -> datetime:
    if type(value) is not int:
        value = _whole(value, "timestamp is not whole seconds")
    return _EPOCH + timedelta(seconds=value)


def _rfc3339(value) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedFrame(f"ts is not an RFC 3339 string: {value!r}")
    ts = datetime.fromisoformat(value)
    if ts.tzinfo is None:
        raise MalformedFrame(f"ts has no time zone: {value!r}")
    return ts.astimezone(timezone.utc)
