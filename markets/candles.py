"""Candles: OHLC of a market's trade prices, volume, VWAP and taker volumes, per interval.

Built from one-minute bars (`trade_bars_1m`, markets/models/bars.py), kept as
trades are stored: `refresh_bars` recomputes a bar from the trades of its
minute, so a late, backfilled, duplicated or deleted trade leaves every bar
exactly as if it had been computed from scratch. Every interval is a whole
number of minutes (m, h, d) aligned to CANDLE_ORIGIN, a UTC midnight, so a
bucket is a union of whole minutes; a range that starts or ends inside a
minute takes that partial minute from the trades themselves. A day of
1-minute candles is 1,440 rows read by primary key, not a day of trades.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Iterable

from django.db import connection

from .selectors import fetchall_binary

# Buckets are aligned to this instant (a UTC midnight), so day candles start
# at 00:00 UTC, 4h candles at 00:00, 04:00, ..., and 15m candles on quarters.
CANDLE_ORIGIN = datetime(2000, 1, 1, tzinfo=timezone.utc)
INTERVAL_UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
MAX_INTERVAL = timedelta(days=366)
# At most this many buckets per request (1-minute candles over a month fit).
MAX_CANDLE_BUCKETS = 50_000
_INTERVAL = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")


def parse_interval(text: str) -> timedelta:
    """'1m', '15m', '4h', '1d' ... as a timedelta; ValueError if not one."""
    match = _INTERVAL.match(text or "")
    if not match:
        raise ValueError(
            f"Unknown interval {text!r}: use N followed by m, h or d, e.g. 1m, 15m, 4h, 1d."
        )
    interval = int(match.group(1)) * INTERVAL_UNITS[match.group(2)]
    if interval > MAX_INTERVAL:
        raise ValueError(f"Interval {text!r} is longer than {MAX_INTERVAL.days} days.")
    return interval


def bucket_start(at: datetime, interval: timedelta) -> datetime:
    """The start of the bucket holding `at` (as date_bin computes it)."""
    return at - (at - CANDLE_ORIGIN) % interval


def bucket_count(start: datetime, end: datetime, interval: timedelta) -> int:
    """How many buckets [start, end) touches."""
    if end <= start:
        return 0
    first = bucket_start(start, interval)
    return -(-(end - first) // interval)


@dataclass
class Candle:
    start: datetime
    end: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int
    vwap: Decimal | None
    yes_taker_volume: Decimal
    no_taker_volume: Decimal
    carried_forward: bool = False


MINUTE = timedelta(minutes=1)
_FOUR_PLACES = Decimal("0.0001")
# Precise enough that only the final rounding rounds; half away from zero, as
# PostgreSQL's round(numeric, 4).
_VWAP = Context(prec=60, rounding=ROUND_HALF_UP)
BAR_COLUMNS = ("market_ticker", "minute", "open", "high", "low", "close", "volume",
               "trade_count", "notional", "yes_taker_volume", "no_taker_volume")
# Trades to one-minute bars, the one definition of a bar: open and close are
# the first and last trade by (ts, trade_id); the taker side is Kalshi's
# taker_outcome_side, or the older taker_side.
_BARS_FROM_TRADES = """
    SELECT t.market_ticker, date_bin('1 minute', t.ts, %(origin)s) AS minute,
           (array_agg(t.yes_price ORDER BY t.ts, t.trade_id))[1],
           max(t.yes_price),
           min(t.yes_price),
           -- The same order as open's, so both aggregate presorted input.
           (array_agg(t.yes_price ORDER BY t.ts, t.trade_id))[count(*)],
           sum(t.count),
           count(*),
           sum(t.yes_price * t.count),
           coalesce(sum(t.count) FILTER (
               WHERE coalesce(t.taker_outcome_side, t.taker_side) = 'yes'), 0),
           coalesce(sum(t.count) FILTER (
               WHERE coalesce(t.taker_outcome_side, t.taker_side) = 'no'), 0)
    FROM trades t {join}
    WHERE {where}
    GROUP BY 1, 2
"""


def minute_of(at: datetime) -> datetime:
    """The start of the minute holding `at`."""
    return bucket_start(at, MINUTE)


def refresh_bars(minutes: Iterable[tuple[str, datetime]]) -> int:
    """Recompute the bars of these (market, minute start) pairs from their trades.

    Call it in the transaction that changed the trades. A minute left with
    no trade loses its bar. Returns the number of bars written.
    """
    pairs = sorted(set(minutes))
    if not pairs:
        return 0
    params = {
        "tickers": [ticker for ticker, _ in pairs],
        "minutes": [minute for _, minute in pairs],
        "lo": min(minute for _, minute in pairs),
        "hi": max(minute for _, minute in pairs) + MINUTE,
        "origin": CANDLE_ORIGIN,
    }
    pairs_sql = "unnest(%(tickers)s::text[], %(minutes)s::timestamptz[]) AS p(market_ticker, minute)"
    select = _BARS_FROM_TRADES.format(
        join=f"JOIN {pairs_sql} ON t.market_ticker = p.market_ticker "
             "AND t.ts >= p.minute AND t.ts < p.minute + interval '1 minute'",
        # The plain bounds let the planner prune the trades' partitions.
        where="t.ts >= %(lo)s AND t.ts < %(hi)s",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM trade_bars_1m b USING {pairs_sql} "
            "WHERE b.market_ticker = p.market_ticker AND b.minute = p.minute", params)
        cursor.execute(f"INSERT INTO trade_bars_1m ({', '.join(BAR_COLUMNS)}) {select}", params)
        return cursor.rowcount


def rebuild_bars(start: datetime, end: datetime) -> int:
    """Recompute every bar of trades with start <= ts < end (bulk loads, migrations)."""
    params = {"lo": minute_of(start), "hi": end, "origin": CANDLE_ORIGIN}
    select = _BARS_FROM_TRADES.format(join="", where="t.ts >= %(lo)s AND t.ts < %(hi)s")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM trade_bars_1m WHERE minute >= %(lo)s AND minute < %(hi)s", params)
        cursor.execute(f"INSERT INTO trade_bars_1m ({', '.join(BAR_COLUMNS)}) {select}", params)
        return cursor.rowcount


def minute_bars(market_ticker: str, start: datetime, end: datetime) -> list[tuple]:
    """The market's one-minute bars of trades in [start, end), in order.

    Rows are (minute, open, high, low, close, volume, trade_count, notional,
    yes_taker_volume, no_taker_volume). Whole minutes come from the bars
    table; a minute cut by `start` or `end` from the trades inside the range.
    """
    first_whole = -(-(start - CANDLE_ORIGIN) // MINUTE) * MINUTE + CANDLE_ORIGIN
    last_whole = minute_of(end)
    if first_whole >= last_whole:
        return _bars_from_trades(market_ticker, start, end)
    rows = _bars_from_trades(market_ticker, start, first_whole) if start < first_whole else []
    rows += fetchall_binary(
        f"SELECT {', '.join(BAR_COLUMNS[1:])} FROM trade_bars_1m "
        "WHERE market_ticker = %s AND minute >= %s AND minute < %s ORDER BY minute",
        [market_ticker, first_whole, last_whole])
    if last_whole < end:
        rows += _bars_from_trades(market_ticker, last_whole, end)
    return rows


def _bars_from_trades(market_ticker: str, start: datetime, end: datetime) -> list[tuple]:
    select = _BARS_FROM_TRADES.format(
        join="", where="t.market_ticker = %(ticker)s AND t.ts >= %(lo)s AND t.ts < %(hi)s")
    with connection.cursor() as cursor:
        cursor.execute(select + " ORDER BY 2", {"ticker": market_ticker, "lo": start, "hi": end,
                                                 "origin": CANDLE_ORIGIN})
        return [row[1:] for row in cursor.fetchall()]


def candles_for(
    *,
    market_ticker: str,
    interval: timedelta,
    start: datetime,
    end: datetime,
    carry_forward: bool = False,
) -> list[Candle]:
    """OHLC of yes prices, volume, trade count, VWAP and taker-side volume per bucket.

    Trades with start <= ts < end; open/close are the first/last trade by
    (ts, trade_id). VWAP is rounded half away from zero to 4 decimals. Buckets
    with no trade are omitted, unless `carry_forward`: then every bucket from
    the first with a known price (the last trade before `start` counts) to
    `end` is present, an empty one with open = high = low = close = the last
    close, zero volume and no VWAP.
    """
    candles = []
    bucket = None
    for minute, open_, high, low, close, volume, count, notional, yes, no in minute_bars(
        market_ticker, start, end
    ):
        first = bucket_start(minute, interval)
        if bucket is None or first != bucket[0]:
            if bucket is not None:
                candles.append(_candle(bucket, interval))
            bucket = [first, open_, high, low, close, volume, count, notional, yes, no]
            continue
        bucket[2] = max(bucket[2], high)
        bucket[3] = min(bucket[3], low)
        bucket[4] = close
        bucket[5] += volume
        bucket[6] += count
        bucket[7] += notional
        bucket[8] += yes
        bucket[9] += no
    if bucket is not None:
        candles.append(_candle(bucket, interval))
    if not carry_forward:
        return candles
    return _carry_forward(candles, market_ticker, interval, start, end)


def _candle(bucket: list, interval: timedelta) -> Candle:
    first, open_, high, low, close, volume, count, notional, yes, no = bucket
    return Candle(first, first + interval, open_, high, low, close, volume, count,
                  _vwap(notional, volume), yes, no)


def _vwap(notional: Decimal, volume: Decimal) -> Decimal | None:
    """notional / volume, rounded half away from zero to 4 places (as PostgreSQL's round)."""
    if not volume:
        return None
    return _VWAP.divide(notional, volume).quantize(_FOUR_PLACES, context=_VWAP)


def _carry_forward(candles, market_ticker, interval, start, end) -> list[Candle]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT yes_price FROM trades WHERE market_ticker = %s AND ts < %s "
            "ORDER BY ts DESC, trade_id DESC LIMIT 1",
            [market_ticker, start],
        )
        row = cursor.fetchone()
    last_close = row[0] if row else None
    by_start = {c.start: c for c in candles}
    filled = []
    bucket = bucket_start(start, interval)
    zero = Decimal("0")
    while bucket < end:
        candle = by_start.get(bucket)
        if candle is not None:
            last_close = candle.close
            filled.append(candle)
        elif last_close is not None:
            filled.append(
                Candle(
                    bucket,
                    bucket + interval,
                    last_close,
                    last_close,
                    last_close,
                    last_close,
                    zero,
                    0,
                    None,
                    zero,
                    zero,
                    carried_forward=True,
                )
            )
        bucket += interval
    return filled


