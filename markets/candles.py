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

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable

import orjson
from django.db import connection

from .record import reads
from .record.schema import TRADES
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
               WHERE coalesce(t.taker_outcome_side, t.taker_side) = 'yes'), 0::numeric(18, 2)),
           coalesce(sum(t.count) FILTER (
               WHERE coalesce(t.taker_outcome_side, t.taker_side) = 'no'), 0::numeric(18, 2))
    FROM {source} {join}
    WHERE {where}
    GROUP BY 1, 2
"""
_TRADES = "trades t"


# Every transaction that writes trades takes this lock before its first
# write (lock_trade_writes), so bars are recomputed one transaction at a time:
# two transactions refreshing the same minute at once would otherwise both
# delete its bar and both insert one (a unique violation that would refuse
# the trades' batch), or the later would miss the earlier's trades. Taken
# first, it cannot deadlock: whoever holds it never waits for a transaction
# that is waiting for it.
TRADE_WRITES_LOCK = 0x6B616C7368692062  # "kalshi b"


def lock_trade_writes(cursor) -> None:
    """Serialize this transaction's trade writes and bar refreshes with others'."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [TRADE_WRITES_LOCK])


def minute_of(at: datetime) -> datetime:
    """The start of the minute holding `at`."""
    return bucket_start(at, MINUTE)


def refresh_bars(minutes: Iterable[tuple[str, datetime]]) -> int:
    """Recompute the bars of these (market, minute start) pairs from their trades.

    Call it in the transaction that changed the trades, after
    lock_trade_writes. A minute left with no trade loses its bar. Returns
    the number of bars written.
    """
    pairs = sorted(set(minutes))
    if not pairs:
        return 0
    params = {
        # One JSON text, not two arrays: psycopg dumps a timestamptz[] element
        # by element in Python (measured: 3.4 us a minute, against 0.1 us a
        # pair as JSON), and the collector refreshes every new trade's minute.
        # orjson writes each minute in RFC 3339 with its offset: exact.
        "pairs": orjson.dumps(pairs).decode(),
        "lo": min(minute for _, minute in pairs),
        "hi": max(minute for _, minute in pairs) + MINUTE,
        "origin": CANDLE_ORIGIN,
    }
    pairs_sql = ("(SELECT e->>0 AS market_ticker, (e->>1)::timestamptz AS minute "
                 "FROM json_array_elements(%(pairs)s::json) e) AS p")
    select = _BARS_FROM_TRADES.format(
        source=_trades_with_lake(pairs, params),
        join=f"JOIN {pairs_sql} ON t.market_ticker = p.market_ticker "
             "AND t.ts >= p.minute AND t.ts < p.minute + interval '1 minute'",
        # The plain bounds let the planner prune the trades' partitions.
        where="t.ts >= %(lo)s AND t.ts < %(hi)s",
    )
    with connection.cursor() as cursor:
        lock_trade_writes(cursor)  # held already if the caller followed the rule; re-entrant
        cursor.execute(
            f"DELETE FROM trade_bars_1m b USING {pairs_sql} "
            "WHERE b.market_ticker = p.market_ticker AND b.minute = p.minute", params)
        cursor.execute(f"INSERT INTO trade_bars_1m ({', '.join(BAR_COLUMNS)}) {select}", params)
        return cursor.rowcount


def _trades_with_lake(pairs: list[tuple[str, datetime]], params: dict) -> str:
    """The trades of the minutes to refresh: the table's, and the lake's for dropped days.

    A trade backfilled late for a day moved to the lake lands in a
    recreated partition beside none of its minute's other trades: the
    day's file holds them (markets/record/reads.py). The lake's trades of
    such minutes are handed to the bar SQL as arrays.
    """
    days = {minute.astimezone(timezone.utc).date() for _, minute in pairs}
    if not reads.lake_days(TRADES, min(days), max(days)):
        return _TRADES
    lake = []
    for ticker, minute in pairs:
        lake += reads.lake_rows(TRADES, market_ticker=ticker, columns=_EDGE_COLUMNS,
                                order=("ts", "trade_id"), start=minute, end=minute + MINUTE)
    if not lake:
        return _TRADES
    for index, column in enumerate(_EDGE_COLUMNS):
        params[f"lake_{column}"] = [trade[index] for trade in lake]
    columns = ", ".join(_EDGE_COLUMNS)
    return (f"(SELECT {columns} FROM trades UNION ALL SELECT {columns} FROM "
            f"{_edge_source('lake').replace(' AS t(', ' AS lake(')}) t")


def rebuild_bars(start: datetime, end: datetime) -> int:
    """Recompute every bar of trades with start <= ts < end (bulk loads, migrations)."""
    params = {"lo": minute_of(start), "hi": end, "origin": CANDLE_ORIGIN}
    select = _BARS_FROM_TRADES.format(source=_TRADES, join="",
                                      where="t.ts >= %(lo)s AND t.ts < %(hi)s")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM trade_bars_1m WHERE minute >= %(lo)s AND minute < %(hi)s", params)
        cursor.execute(f"INSERT INTO trade_bars_1m ({', '.join(BAR_COLUMNS)}) {select}", params)
        return cursor.rowcount


# The candles of [start, end), one row per bucket, in SQL: the minutes are the
# stored bars of the whole minutes in the range, and bars computed from the
# trades of the partial minutes at either end; buckets combine minutes (the
# first minute's open, the last one's close; VWAP is the notional over the
# volume, rounded half away from zero as before bars existed).
_STORED_MINUTES = """
    SELECT minute, open, high, low, close, volume, trade_count, notional,
           yes_taker_volume, no_taker_volume
    FROM trade_bars_1m
    WHERE market_ticker = %(ticker)s AND minute >= %(first_whole)s AND minute < %(last_whole)s
"""
_PARTIAL_MINUTE = """
    SELECT minute, open, high, low, close, volume, trade_count, notional, yes, no
    FROM ({bars}) AS partial (market_ticker, minute, open, high, low, close, volume,
                              trade_count, notional, yes, no)
"""
# Buckets of several minutes combine them.
_COMBINE = """
    SELECT date_bin(%(interval)s, minute, %(origin)s) AS bucket,
           (array_agg(open ORDER BY minute))[1] AS open,
           max(high) AS high,
           min(low) AS low,
           (array_agg(close ORDER BY minute DESC))[1] AS close,
           sum(volume) AS volume,
           sum(trade_count)::int AS trade_count,
           round(sum(notional) / NULLIF(sum(volume), 0), 4) AS vwap,
           sum(yes_taker_volume) AS yes_taker_volume,
           sum(no_taker_volume) AS no_taker_volume
    FROM minutes
    GROUP BY 1
"""
# One-minute buckets are the minutes themselves (the same numbers, without
# grouping 1,440 groups of one).
_AS_IS = """
    SELECT minute AS bucket, open, high, low, close, volume, trade_count,
           round(notional / NULLIF(volume, 0), 4) AS vwap, yes_taker_volume, no_taker_volume
    FROM minutes
"""
_EDGE = "t.market_ticker = %(ticker)s AND t.ts >= %({lo})s AND t.ts < %({hi})s"
# A partial minute on a day moved to the lake: its trades, read by
# markets/record/reads.py, are handed over as arrays, and the bar is computed
# by the same SQL as from the table.
_EDGE_COLUMNS = ("market_ticker", "ts", "trade_id", "yes_price", "count", "taker_outcome_side",
                 "taker_side")
_EDGE_TYPES = ("text", "timestamptz", "text", "numeric", "numeric", "text", "text")


def _edge_source(edge: str) -> str:
    arrays = ", ".join(f"%({edge}_{column})s::{kind}[]"
                       for column, kind in zip(_EDGE_COLUMNS, _EDGE_TYPES))
    return f"unnest({arrays}) AS t({', '.join(_EDGE_COLUMNS)})"


@functools.cache
def _candle_sql(one_minute: bool, left: bool, right: bool, left_lake: bool = False,
                right_lake: bool = False) -> str:
    """The candles' SQL; the partial minutes' parts only when the range cuts a minute
    (each one is planned over every partition of `trades`)."""
    parts = [_STORED_MINUTES]
    if left:
        parts.append(_PARTIAL_MINUTE.format(bars=_BARS_FROM_TRADES.format(
            source=_edge_source("left") if left_lake else _TRADES,
            join="", where=_EDGE.format(lo="start", hi="left_end"))))
    if right:
        parts.append(_PARTIAL_MINUTE.format(bars=_BARS_FROM_TRADES.format(
            source=_edge_source("right") if right_lake else _TRADES,
            join="", where=_EDGE.format(lo="right_start", hi="end"))))
    minutes = " UNION ALL ".join(parts)
    return f"WITH minutes AS ({minutes}) {_AS_IS if one_minute else _COMBINE}"


def _lake_edge(params: dict, edge: str, start: datetime, end: datetime) -> bool:
    """Put the trades of a partial minute in `params` if its day is in the lake."""
    day = start.astimezone(timezone.utc).date()
    if not reads.lake_days(TRADES, day, day, params["ticker"]):
        return False
    trades = []
    after = None
    while True:  # a minute of trades, in bounded batches
        batch = reads.rows(TRADES, market_ticker=params["ticker"], columns=_EDGE_COLUMNS,
                           order=("ts", "trade_id"), start=start, end=end, after=after,
                           limit=EDGE_BATCH_SIZE)
        trades.extend(batch)
        if len(batch) < EDGE_BATCH_SIZE:
            break
        after = batch[-1][1:3]
    for index, column in enumerate(_EDGE_COLUMNS):
        params[f"{edge}_{column}"] = [trade[index] for trade in trades]
    return True


EDGE_BATCH_SIZE = 10_000


# The API's JSON of one candle, rendered by PostgreSQL (see candles_json):
# prices print with their 4 places and volumes with their 2, as
# backtest_api's serializers write them; bucket bounds are whole minutes.
_ISO_MINUTE = """'"' || to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '"'"""
_CANDLE_JSON = " || ".join([
    """'{"start":' || """ + _ISO_MINUTE.format(column="bucket"),
    """',"end":' || """ + _ISO_MINUTE.format(column="bucket + %(interval)s"),
    """',"open":"' || open::text || '","high":"' || high::text || '","low":"' || low::text""",
    """'","close":"' || close::text || '","volume":"' || volume::text""",
    """'","trade_count":' || trade_count::text""",
    """',"vwap":' || coalesce('"' || vwap::text || '"', 'null')""",
    """',"yes_taker_volume":"' || yes_taker_volume::text""",
    """'","no_taker_volume":"' || no_taker_volume::text || '","carried_forward":false}'""",
])


def _candles_query(market_ticker: str, interval: timedelta, start: datetime,
                   end: datetime) -> tuple[str, dict]:
    first_whole = -(-(start - CANDLE_ORIGIN) // MINUTE) * MINUTE + CANDLE_ORIGIN
    last_whole = minute_of(end)
    params = {
        "ticker": market_ticker, "interval": interval, "origin": CANDLE_ORIGIN,
        "start": start, "end": end, "first_whole": first_whole, "last_whole": last_whole,
        # The partial minutes: [start, first whole minute) and [end's minute, end),
        # empty when the range starts or ends on a minute, never overlapping.
        "left_end": min(first_whole, end), "right_start": max(last_whole, first_whole),
    }
    left, right = start < params["left_end"], params["right_start"] < end
    # A partial minute never spans midnight: one day each.
    left_lake = left and _lake_edge(params, "left", start, params["left_end"])
    right_lake = right and _lake_edge(params, "right", params["right_start"], end)
    sql = _candle_sql(interval == MINUTE, left, right, left_lake, right_lake)
    return sql, params


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
    sql, params = _candles_query(market_ticker, interval, start, end)
    rows = fetchall_binary(sql + " ORDER BY bucket", params)
    candles = [Candle(row[0], row[0] + interval, *row[1:]) for row in rows]
    if not carry_forward:
        return candles
    return _carry_forward(candles, market_ticker, interval, start, end)


def candles_json(*, market_ticker: str, interval: timedelta, start: datetime, end: datetime) -> bytes:
    """The candles of candles_for (without carry_forward) as the API's JSON array.

    PostgreSQL writes the JSON: for a day of 1-minute candles, turning 1,440
    rows into Python objects and back into text cost more than the query.
    """
    sql, params = _candles_query(market_ticker, interval, start, end)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(string_agg({_CANDLE_JSON}, ',' ORDER BY bucket), '') "
                       f"FROM ({sql}) c", params)
        return b"[" + cursor.fetchone()[0].encode() + b"]"


def _carry_forward(candles, market_ticker, interval, start, end) -> list[Candle]:
    found = reads.rows(TRADES, market_ticker=market_ticker, columns=("ts", "trade_id", "yes_price"),
                       order=("ts", "trade_id"), end=start, descending=True, limit=1)
    row = found[0][2:] if found else None
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


