"""The replay event stream: every recorded event of a set of markets, as JSON lines.

The bulk API's /replay endpoint (docs/bulk.md) serves it; Python callers use
`replay_events`. The stream opens with each market's book at the start (built
by markets/replay.py, the one place that rebuilds books) and then merges the
deltas, stored snapshots, trades, lifecycle events and recorded gaps in the
order the recorder received them.
"""

from __future__ import annotations

import bisect
import heapq
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator, Sequence

from django.db.models import Q

from .models import Market, SequenceGap
from .fixedpoint import format_count, format_price
from .record import compact, packs, reads
from .record.schema import DELTAS, LIFECYCLE, TRADES
from .replay import MIN_BIGINT, ONE_MICROSECOND, book_at, keyset_batches, stored_snapshots

# Every event of a set of markets in [start, end), merged in the order the
# recorder received them, as JSON lines (see docs/bulk.md for each event's
# fields). Each (market, table) is one source read in keyset batches, and a
# k-way merge interleaves them, so memory stays constant however long the
# range. Keyset batches rather than one long server-side cursor: each batch
# is its own short statement, so a slow client never holds a snapshot or a
# lock that would stall partition maintenance.
#
# The hot path renders each row's JSON inside PostgreSQL (which prints
# NUMERIC with its exact scale), so Python only merges and joins strings.
# Every source yields sorted batches of rows (line, *keyset) and knows each
# row's replay key (received_at_iso, session_id, seq); a row's merge key is
# that plus (rank, source index). The ISO strings have a fixed width, so they
# sort as the instants do; they are cut out of the line itself, whose prefix
# up to received_at has a fixed length within a source (one market), rather
# than sent twice. The market ticker is a parameter, not a column: both
# measured about 40% off PostgreSQL's time per row. `rank` orders rows that
# share a replay key (a checkpoint shares the key of the last delta it
# includes and comes after it); the source index settles any remaining tie.
#
# heapq.merge would cost a heap operation per row. The merge here works in
# runs instead (`_merge_runs`): the source with the smallest head may emit
# every row that sorts before the smallest head of the others, found by
# bisection, so a busy market's deltas between two sparse events (a trade, a
# checkpoint) leave as one slice.

STREAM_TYPES = ("deltas", "trades", "lifecycle")
STREAM_BATCH_SIZE = 10_000  # rows per keyset batch, shared between the markets
MIN_SOURCE_BATCH_SIZE = 1_000
# Trades are partitioned on exchange time (ts) but replayed in receive order.
# A trade is looked for in partitions from TRADE_LATENESS before the range (a
# REST backfill after an outage receives old trades late) to CLOCK_SKEW after
# it (the exchange's clock may run ahead of ours), so the scan prunes.
TRADE_LATENESS = timedelta(days=1)
CLOCK_SKEW = timedelta(minutes=5)
# Which recorded gaps belong to which stream type (Kalshi channel names).
GAP_CHANNELS = {
    "deltas": ("orderbook_delta",),
    "trades": ("trade",),
    "lifecycle": ("market_lifecycle_v2", "multivariate_market_lifecycle"),
}

_RANK_GAP, _RANK_DELTA, _RANK_SNAPSHOT, _RANK_TRADE, _RANK_LIFECYCLE = range(5)
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SQL_ISO_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
_ISO_WIDTH = len("2026-11-23T00:00:00.000000Z")




def iso_utc(value: datetime | None) -> str | None:
    """An instant as fixed-width ISO 8601 UTC with microseconds, as the stream prints it."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime(_ISO_FORMAT)


def _sql_iso(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', '{_SQL_ISO_FORMAT}')"


def _json_str(column: str) -> str:
    return f"coalesce(to_json({column})::text, 'null')"


def _json_decimal(column: str) -> str:
    # NUMERIC prints with its column's scale: "0.5600", "-4.00".
    return f"coalesce('\"' || {column}::text || '\"', 'null')"


def _json_time(column: str) -> str:
    return f"coalesce('\"' || {_sql_iso(column)} || '\"', 'null')"


def _json_raw(column: str) -> str:
    # integers, booleans and jsonb print as JSON already
    return f"coalesce({column}::text, 'null')"


def _sql_json_object(fields: Sequence[tuple[str, str]]) -> str:
    """SQL that renders one compact JSON object from (key, JSON-valued SQL) pairs."""
    parts = [
        f"""'{"{" if i == 0 else ","}"{name}":' || {expr}"""
        for i, (name, expr) in enumerate(fields)
    ]
    return "(" + " || ".join(parts) + " || '}')"


_DELTA_LINE = _sql_json_object([
    ("type", "'\"delta\"'"),
    ("market_ticker", "%s"),
    ("received_at", _json_time("received_at")),
    ("ts", _json_time("ts")),
    ("session_id", _json_raw("session_id")),
    ("sid", _json_raw("sid")),
    ("seq", _json_raw("seq")),
    ("side", _json_str("side")),
    ("price", _json_decimal("price")),
    ("delta", _json_decimal("delta")),
])
# Each source selects its line, then the rest of its replay-order key
# (received_at is read back from the line itself).
_DELTA_SQL = (
    f"SELECT {_DELTA_LINE}, session_id, seq, sid FROM {packs.LOOSE_VIEW} "
    "WHERE market_id = %s AND received_at >= %s AND received_at < %s "
    f"AND {DELTAS.after_sql(('%s::timestamptz', '%s', '%s', '%s'))} "
    f"ORDER BY {DELTAS.order_sql()} LIMIT %s"
)

_TRADE_LINE = _sql_json_object([
    ("type", "'\"trade\"'"),
    ("market_ticker", "%s"),
    ("received_at", _json_time("received_at")),
    ("ts", _json_time("ts")),
    ("trade_id", _json_str("trade_id")),
    ("yes_price", _json_decimal("yes_price")),
    ("no_price", _json_decimal("no_price")),
    ("count", _json_decimal("count")),
    ("taker_outcome_side", _json_str("taker_outcome_side")),
    ("taker_book_side", _json_str("taker_book_side")),
    ("taker_side", _json_str("taker_side")),
    ("is_block_trade", _json_raw("is_block_trade")),
    ("source", _json_str("source")),
])
# In receive order, from the index trades_received_idx (market_ticker,
# received_at, ts, trade_id) of each partition in the ts window.
_TRADE_SQL = (
    f"SELECT {_TRADE_LINE}, trade_id FROM {TRADES.db_table} "
    "WHERE market_ticker = %s AND ts >= %s AND ts < %s "
    "AND received_at >= %s AND received_at < %s "
    f"AND {TRADES.after_sql(('%s::timestamptz', '%s::timestamptz', '%s'))} "
    f"ORDER BY {TRADES.order_sql()} LIMIT %s"
)

_LIFECYCLE_LINE = _sql_json_object([
    ("type", "'\"lifecycle\"'"),
    ("market_ticker", "%s"),
    ("received_at", _json_time("received_at")),
    ("ts", _json_time("ts")),
    ("event_ticker", _json_str("event_ticker")),
    ("event_type", _json_str("event_type")),
    ("session_id", _json_raw("session_id")),
    ("sid", _json_raw("sid")),
    ("seq", _json_raw("seq")),
    ("payload", _json_raw("payload")),
])
_LIFECYCLE_SQL = (
    f"SELECT {_LIFECYCLE_LINE}, session_id, seq, id FROM {LIFECYCLE.db_table} "
    "WHERE {where} AND received_at >= %s AND received_at < %s "
    f"AND {LIFECYCLE.after_sql(('%s::timestamptz', '%s', '%s', '%s'))} "
    f"ORDER BY {LIFECYCLE.order_sql()} LIMIT %s"
)


@dataclass
class _Source:
    rank: int
    batches: Iterator[list[tuple]]  # rows (line, ...), in replay order
    replay_key: Callable[[tuple], tuple]  # row -> (received_at_iso, session_id, seq)


def _received_at_slice(kind: str, ticker: str) -> slice:
    """Where received_at sits in the lines of one source (see _sql_json_object)."""
    prefix = f'{{"type":"{kind}","market_ticker":{_dumps(ticker)},"received_at":"'
    return slice(len(prefix), len(prefix) + _ISO_WIDTH)


def _delta_source(ticker, start, end, batch_size) -> _Source:
    at = _received_at_slice("delta", ticker)
    # Only today's deltas are all loose rows: a closed day may be packed,
    # and reads.rows() reads its chunks too (markets/record/packs.py).
    if reads.lake_days(DELTAS, _day(start), _day(end), ticker) or packs.may_be_packed(start):
        batches = _lake_delta_batches(ticker, start, end, batch_size)
    else:
        batches = _todays_delta_batches(ticker, start, end, batch_size, at)
    return _Source(_RANK_DELTA, batches, lambda row: (row[0][at], row[1], row[2]))


def _todays_delta_batches(ticker, start, end, batch_size, at: slice):
    """Today's deltas, all loose rows, their lines rendered by SQL.

    A stream can outlive its day: once midnight has passed, `archive` may
    pack the day under it, and the loose rows alone would end the stream
    early. Each query is therefore checked after it ran: before midnight,
    its rows are whole; after, they are read again, with the chunks, and so
    is the rest (the path of closed days).
    """
    last = None
    for batch in keyset_batches(
        _DELTA_SQL,
        [_dumps(ticker), compact.market_id(ticker), start, end],
        (iso_utc(start), MIN_BIGINT, MIN_BIGINT, MIN_BIGINT),
        lambda row: (row[0][at], row[1], row[2], row[3]),
        batch_size,
    ):
        if packs.may_be_packed(start):
            break
        yield batch
        last = batch[-1]
    else:
        if not packs.may_be_packed(start):  # the last query, which found no more
            return
    after = None if last is None else (
        datetime.fromisoformat(last[0][at]), last[1], last[2], last[3])
    yield from _lake_delta_batches(ticker, start, end, batch_size, after=after)


def _trade_source(ticker, start, end, batch_size) -> _Source:
    at = _received_at_slice("trade", ticker)
    return _Source(
        _RANK_TRADE,
        _trades_in_receive_order(ticker, start, end, batch_size, at),
        lambda row: (row[0][at], 0, 0),
    )


# --- sources that reach days in the lake ---------------------------------------------
#
# A range that reaches a day moved to the lake (markets/record/reads.py) is
# read through reads.batches, which merges PostgreSQL's rows with the day
# files', and each line is rendered here exactly as the SQL above renders
# it: NUMERIC with its column's places, times at microseconds.


def _day(at: datetime):
    return at.astimezone(timezone.utc).date()


def _lake_delta_batches(ticker, start, end, batch_size, after=None):
    """A market's deltas through reads.rows(), after the replay key `after` if given."""
    name = _dumps(ticker)
    for batch in reads.batches(DELTAS, market_ticker=ticker, columns=DELTAS.columns,
                               order=DELTAS.replay_order, start=start, end=end, after=after,
                               batch_size=batch_size):
        yield [(
            f'{{"type":"delta","market_ticker":{name},"received_at":"{iso_utc(received_at)}",'
            f'"ts":{_dumps(iso_utc(ts))},"session_id":{session_id},"sid":{sid},"seq":{seq},'
            f'"side":{_dumps(side)},"price":"{format_price(price)}",'
            f'"delta":"{format_count(delta)}"}}',
            session_id, seq, sid,
        ) for _, received_at, session_id, sid, seq, side, price, delta, ts in batch]


def _lake_trade_batches(ticker, start, end, batch_size):
    name = _dumps(ticker)
    for batch in reads.batches(TRADES, market_ticker=ticker, columns=TRADES.columns,
                               order=TRADES.replay_order, column="received_at", start=start,
                               end=end, days=(start - TRADE_LATENESS, end + CLOCK_SKEW),
                               batch_size=batch_size):
        yield [(
            f'{{"type":"trade","market_ticker":{name},"received_at":"{iso_utc(received_at)}",'
            f'"ts":{_dumps(iso_utc(ts))},"trade_id":{_dumps(trade_id)},'
            f'"yes_price":"{format_price(yes_price)}","no_price":"{format_price(no_price)}",'
            f'"count":"{format_count(count)}","taker_outcome_side":{_dumps(outcome_side)},'
            f'"taker_book_side":{_dumps(book_side)},"taker_side":{_dumps(taker_side)},'
            f'"is_block_trade":{_dumps(is_block)},"source":{_dumps(source)}}}',
            trade_id,
        ) for (_, ts, trade_id, yes_price, no_price, count, outcome_side, book_side,
               taker_side, is_block, received_at, source) in batch]


def _trades_in_receive_order(ticker, start, end, batch_size, at: slice):
    """A market's trades in (received_at, ts, trade_id) order, in keyset batches.

    Trades are partitioned on exchange time (ts) but replayed in receive
    order; the index on (market_ticker, received_at, ts, trade_id) serves
    that order directly, so a trade received long after its exchange time
    (a REST backfill) costs no more memory than any other: one batch is
    held, however late the trades.
    """
    # "ts" follows "received_at" in a trade's line and is never null
    ts_at = slice(at.stop + len('","ts":"'), at.stop + len('","ts":"') + _ISO_WIDTH)
    if reads.lake_days(TRADES, _day(start - TRADE_LATENESS), _day(end + CLOCK_SKEW), ticker):
        return _lake_trade_batches(ticker, start, end, batch_size)
    return keyset_batches(
        _TRADE_SQL,
        [_dumps(ticker), ticker, start - TRADE_LATENESS, end + CLOCK_SKEW, start, end],
        (iso_utc(start), "-infinity", ""),
        lambda row: (row[0][at], row[0][ts_at], row[1]),
        batch_size,
    )


def _lifecycle_source(ticker, where, where_params, start, end, batch_size) -> _Source:
    at = _received_at_slice("lifecycle", ticker)
    return _Source(
        _RANK_LIFECYCLE,
        keyset_batches(
            _LIFECYCLE_SQL.replace("{where}", where),
            [_dumps(ticker), *where_params, start, end],
            (iso_utc(start), MIN_BIGINT, MIN_BIGINT, MIN_BIGINT),
            lambda row: (row[0][at], row[1], row[2], row[3]),
            batch_size,
        ),
        lambda row: (row[0][at], row[1], row[2]),
    )


def _run_end(keys: list, position: int, limit: tuple) -> int:
    """The first index after `position` whose key sorts at or after `limit`.

    keys[position] sorts before `limit`. Runs are often short (a trade every
    few deltas), so this gallops (1, 2, 4... rows ahead) before bisecting the
    last step: a short run costs a comparison or two, a long one log n.
    """
    size, step, low = len(keys), 1, position + 1
    while True:
        probe = position + step
        if probe >= size:
            return bisect.bisect_left(keys, limit, low, size)
        if keys[probe] >= limit:
            return bisect.bisect_left(keys, limit, low, probe)
        low, step = probe + 1, step * 2


def _merge_runs(sources: list[_Source]) -> Iterator[list[str]]:
    """The lines of all sources in merge-key order, as runs (lists) of lines.

    Each batch's merge keys and lines are listed once when it arrives, so a
    row costs one key however many times the merge looks at it (many
    interleaved markets make runs of one row: bench/replay_bench.py)."""

    def load(index: int, batch: list) -> list:
        key = keys_of[index]
        return [[key(row) for row in batch], [row[0] for row in batch], 0]

    heap = []  # (merge key of the head row, source index)
    state = {}  # source index -> [keys, lines, position]
    keys_of = {}
    for index, source in enumerate(sources):
        keys_of[index] = (lambda replay_key, tail: lambda row: replay_key(row) + tail)(
            source.replay_key, (source.rank, index))
        batch = next(source.batches, None)
        if batch:
            state[index] = load(index, batch)
            heap.append((state[index][0][0], index))
    heapq.heapify(heap)
    while heap:
        _, index = heapq.heappop(heap)
        keys, lines, position = state[index]
        if not heap:  # the last source left: the rest of it, batch by batch
            yield lines[position:]
            for batch in sources[index].batches:
                yield [row[0] for row in batch]
            return
        limit = heap[0][0]
        while True:
            end = _run_end(keys, position, limit)
            yield lines[position:end]
            if end < len(keys):
                state[index][2] = end
                heapq.heappush(heap, (keys[end], index))
                break
            batch = next(sources[index].batches, None)
            if not batch:
                del state[index]
                break
            state[index] = load(index, batch)
            keys, lines, position = state[index]
            if keys[0] >= limit:  # the new batch starts behind another source
                heapq.heappush(heap, (keys[0], index))
                break


def _snapshot_source(ticker, start, end) -> _Source:
    rows = (_snapshot_row(ticker, *row) for row in stored_snapshots(ticker, start, end))
    return _Source(_RANK_SNAPSHOT, ([row] for row in rows), lambda row: row[1:])


def _snapshot_row(ticker, received_at, session_id, sid, seq, source, book, ts):
    yes, no = book.snapshot_levels()
    line = _dumps({
        "type": "snapshot",
        "market_ticker": ticker,
        "received_at": iso_utc(received_at),
        "ts": iso_utc(ts),
        "source": source,
        "session_id": session_id,
        "sid": sid,
        "seq": seq,
        "yes": yes,
        "no": no,
    })
    return (line, iso_utc(received_at), session_id, seq)


def gap_fields(gap: SequenceGap) -> dict:
    """A recorded gap as the stream and the coverage report print it."""
    end = gap.recovered_at
    return {
        "market_ticker": gap.market_ticker,
        "channel": gap.channel,
        "reason": gap.reason,
        "start": iso_utc(gap.detected_at),
        "end": iso_utc(end),
        "duration_seconds": (end - gap.detected_at).total_seconds() if end else None,
        "session_id": gap.session_id,
        "sid": gap.sid,
        "expected_seq": gap.expected_seq,
        "received_seq": gap.received_seq,
    }


def _gap_source(tickers, channels, start, end) -> _Source:
    return _Source(_RANK_GAP, iter([list(_gap_rows(tickers, channels, start, end))]),
                   lambda row: row[1:])


def _gap_rows(tickers, channels, start, end):
    # A handful per market and day: read at once.
    gaps = SequenceGap.objects.filter(
        Q(market_ticker__in=tickers) | Q(market_ticker=""),
        channel__in=channels,
        detected_at__gte=start,
        detected_at__lt=end,
    ).order_by("detected_at", "session_id", "id")
    for gap in gaps:
        line = _dumps({"type": "gap", "received_at": iso_utc(gap.detected_at), "ts": None,
                       **gap_fields(gap)})
        yield (line, iso_utc(gap.detected_at), gap.session_id, 0)


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def opening_snapshot(market_ticker: str, start: datetime) -> str:
    """The stream's first line for a market: its book just before `start`.

    Every event at or after `start` follows in the stream, so the book is the
    one that stood before any of them (book_at one microsecond earlier,
    PostgreSQL's resolution).
    """
    state = book_at(market_ticker, start - ONE_MICROSECOND)
    yes, no = state.book.snapshot_levels()
    return _dumps({
        "type": "snapshot",
        "market_ticker": market_ticker,
        "received_at": iso_utc(start),
        "ts": None,
        "source": "start",
        "complete": state.complete,
        "gap": gap_fields(state.gap) if state.gap else None,
        "snapshot_received_at": iso_utc(state.snapshot.received_at) if state.snapshot else None,
        "deltas_applied": state.deltas_applied,
        "yes": yes,
        "no": no,
    })


def replay_runs(
    *,
    market_tickers: Sequence[str],
    start_time: datetime,
    end_time: datetime,
    types: Iterable[str] = STREAM_TYPES,
    batch_size: int = STREAM_BATCH_SIZE,
) -> Iterator[list[str]]:
    """The replay stream of `market_tickers` over [start_time, end_time), in runs of JSON lines.

    With "deltas": first each book as it stood at start_time (a snapshot with
    source "start"), then the deltas, every stored re-baseline or checkpoint
    as a snapshot event, and the recorded gaps as gap events. Trades and
    lifecycle messages when asked for. All in the order received. Applying
    the stream from its first line (a snapshot replaces the book, a delta
    adds to a level) gives book_at() at every instant. Runs are lists of
    lines, in order (see replay_lines for one line at a time).
    """
    types = set(types)
    unknown = types - set(STREAM_TYPES)
    if unknown:
        raise ValueError(f"unknown stream types: {', '.join(sorted(unknown))}")
    tickers = list(dict.fromkeys(market_tickers))
    start, end = start_time, end_time
    # Every source holds one batch: share the budget between the markets, so
    # memory stays bounded however many are asked for.
    batch_size = max(min(batch_size, MIN_SOURCE_BATCH_SIZE), batch_size // max(len(tickers), 1))
    sources: list[_Source] = []
    if "deltas" in types:
        yield [opening_snapshot(ticker, start) for ticker in tickers]
        for ticker in tickers:
            sources.append(_delta_source(ticker, start, end, batch_size))
            sources.append(_snapshot_source(ticker, start, end))
    if "trades" in types:
        for ticker in tickers:
            sources.append(_trade_source(ticker, start, end, batch_size))
    if "lifecycle" in types:
        for ticker in tickers:
            sources.append(_lifecycle_source(
                ticker, "market_ticker = %s", [ticker], start, end, batch_size))
        events = sorted(set(
            Market.objects.filter(ticker__in=tickers).exclude(event_ticker="")
            .values_list("event_ticker", flat=True)
        ))
        if events:
            sources.append(_lifecycle_source(
                "", "market_ticker = '' AND event_ticker = ANY(%s)", [events], start, end,
                batch_size))
    channels = [c for t in sorted(types) for c in GAP_CHANNELS[t]]
    sources.append(_gap_source(tickers, channels, start, end))
    for run in _merge_runs(sources):
        if run:
            yield run


def replay_lines(**kwargs) -> Iterator[str]:
    """replay_runs(), one JSON line at a time."""
    for run in replay_runs(**kwargs):
        yield from run


def replay_events(**kwargs) -> Iterator[dict]:
    """replay_lines(), each line parsed: for tests and Python callers."""
    return (json.loads(line) for line in replay_lines(**kwargs))
