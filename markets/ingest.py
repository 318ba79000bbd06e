"""Bulk writes of the time-series tables: COPY, then insert what is new.

Each function takes a batch of row tuples in its table's column order, makes
sure every day it touches has a partition, COPYs the rows into a temporary
staging table and moves them into the partitioned table with
`INSERT ... ON CONFLICT DO NOTHING`, all in one transaction. Loading the same
rows again (a journal replay, an overlapping backfill) therefore stores
nothing twice. This was the fastest idempotent load measured (about 166k
rows/s new, 288k rows/s replayed; see ../shared/DESIGN.md); Django's
bulk_create managed about 25k rows/s and psqlextra's bulk_upsert breaks on
composite keys.

Each returns the number of rows that were new.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Sequence

from django.db import connection, transaction
from psycopg.types.datetime import TimestamptzLoader

from .candles import lock_trade_writes, minute_of, refresh_bars
from .partitioning import ensure_partitions
from .record import compact, reads
from .record.schema import DELTAS, GAPS, LIFECYCLE, SNAPSHOTS, TRADES, RecordTable

def trades_ingest(rows: Sequence[tuple]) -> int:
    """Store trades (TRADES.columns order); a trade already stored is skipped."""
    return _copy_idempotent(TRADES, rows)


def trades_ingest_new_ids(rows: Sequence[tuple]) -> int:
    """Store trades whose trade_id is not stored for that market on any day.

    For backfills: REST and WebSocket can stamp the same trade with times
    that differ in precision, so the primary key alone would not match it.
    """
    return _copy_idempotent(
        TRADES,
        rows,
        extra_where=(
            "NOT EXISTS (SELECT 1 FROM trades t WHERE t.market_ticker = s.market_ticker"
            " AND t.trade_id = s.trade_id)"
        ),
        lake_key=("trade_id",),
    )


def deltas_ingest(rows: Sequence[tuple]) -> int:
    """Store order-book deltas (DELTAS.columns order); duplicates are skipped."""
    return _copy_idempotent(DELTAS, rows)


def snapshots_ingest(rows: Sequence[tuple]) -> int:
    """Store book snapshots (SNAPSHOTS.columns order); levels may be lists or JSON text."""
    return _copy_idempotent(SNAPSHOTS, rows)


def deltas_append(rows: Sequence[tuple]) -> int:
    """Store deltas that cannot be stored yet, with a plain COPY.

    For the live collector's batches, written once: about twice as fast as
    deltas_ingest, because PostgreSQL skips the staging table and the
    conflict checks. A row that is already stored makes it raise
    IntegrityError (and store nothing): then load the batch with
    deltas_ingest.
    """
    if not rows:
        return 0
    _ensure_days(DELTAS, rows)
    market = DELTAS.index("market_ticker")
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        ids = compact.market_ids(raw, {row[market] for row in rows})
        # Binary COPY of the compact row: integers only, the cheapest form
        # for both sides (markets/record/compact.py).
        with raw.copy(f"COPY {compact.STORED_TABLE} ({', '.join(compact.STORED_COLUMNS)}) "
                      "FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(compact.STORED_TYPES)
            for row in compact.stored_rows(rows, ids):
                copy.write_row(row)
    return len(rows)


def snapshots_append(rows: Sequence[tuple]) -> int:
    """Store snapshots that cannot be stored yet; see deltas_append()."""
    return _copy_plain(SNAPSHOTS, rows)


def _copy_plain(table: RecordTable, rows) -> int:
    if not rows:
        return 0
    _ensure_days(table, rows)
    columns = table.columns
    with transaction.atomic():
        with connection.cursor() as cursor:
            with cursor.cursor.copy(
                    f"COPY {table.stored_table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in _with_json(rows, columns):
                    copy.write_row(row)
    return len(rows)


def _ensure_days(table: RecordTable, rows) -> None:
    """Every UTC day the rows fall on (by the table's day column) has its partition."""
    day_index = table.index(table.day_column)
    ensure_partitions(table.stored_model, {_utc_day(row[day_index]) for row in rows})


def _with_json(rows, columns):
    """The rows with book levels given as lists encoded to JSON text for COPY."""
    json_indexes = [i for i, c in enumerate(columns) if c in ("yes_levels", "no_levels")]
    if not json_indexes:
        return rows
    return (_json_row(row, json_indexes) for row in rows)


def _json_row(row, json_indexes):
    row = list(row)
    for i in json_indexes:
        if not isinstance(row[i], str):
            row[i] = json.dumps(row[i])
    return row


def _not_in_lake(record: RecordTable, rows, by: tuple[str, ...]):
    """The rows whose `by` columns match no row of a day moved to the lake.

    ON CONFLICT sees only PostgreSQL: a row loaded again for a day whose
    partition `archive` dropped (an overlapping backfill, a journal replay)
    would otherwise be stored beside its copy in the day's file. Each
    market's rows are compared with the file's rows over their span.
    """
    if record not in (DELTAS, SNAPSHOTS, TRADES) or not rows:
        return rows
    at = record.index(record.day_column)
    days = {_utc_day(row[at]) for row in rows}
    if not reads.lake_days(record, min(days), max(days)):
        return rows
    market = record.index("market_ticker")
    positions = [record.index(c) for c in by]
    order = tuple(c for c in record.identity if c != "market_ticker")
    columns = tuple(dict.fromkeys(order + by))
    stored = set()
    for ticker in {row[market] for row in rows}:
        times = [row[at] for row in rows if row[market] == ticker]
        # A backfill may stamp a trade a little differently (REST vs WS precision).
        slack = timedelta(seconds=1) if "ts" not in by else timedelta(0)
        for found in reads.lake_rows(record, market_ticker=ticker, columns=columns, order=order,
                                     start=min(times) - slack,
                                     end=max(times) + slack + timedelta(microseconds=1)):
            stored.add((ticker, *(found[columns.index(c)] for c in by)))
    if not stored:
        return rows
    return [row for row in rows
            if (row[market], *(row[p] for p in positions)) not in stored]


def _copy_idempotent(record: RecordTable, rows, extra_where=None,
                     lake_key: tuple[str, ...] | None = None) -> int:
    rows = _not_in_lake(record, rows, lake_key or tuple(
        c for c in record.identity if c != "market_ticker"))
    if not rows:
        return 0
    table = record.db_table
    columns = record.columns
    staging = f"_staging_{table}"
    column_list = ", ".join(columns)
    with transaction.atomic():
        with connection.cursor() as cursor:
            if record is TRADES:
                # Before any write, a new partition included: markets/candles.py.
                lock_trade_writes(cursor)
            _ensure_days(record, rows)
            raw = cursor.cursor  # psycopg 3 cursor, for COPY
            raw.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
                f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with raw.copy(f"COPY {staging} ({column_list}) FROM STDIN") as copy:
                for row in _with_json(rows, columns):
                    copy.write_row(row)
            # Trades keep their minute's candle bar exact: the new ones say
            # which bars to recompute (markets/candles.py).
            returning = "market_ticker, ts" if record is TRADES else ""
            for statement in compact.insert_sql(record, staging, extra_where or "", returning):
                raw.execute(statement)
            inserted = raw.rowcount
            if returning:
                # psycopg's own timestamptz loader (in C), not Django's Python
                # subclass of it, which only sets the zone the session has
                # anyway (UTC): measured 3.8 -> 0.5 us a row on ingest_bench.
                raw.adapters.register_loader("timestamptz", TimestamptzLoader)
                refresh_bars((ticker, minute_of(ts)) for ticker, ts in raw.fetchall())
            return inserted


def _utc_day(value: datetime):
    return value.astimezone(timezone.utc).date()


# --- low-volume rows: gaps in the record and lifecycle messages --------------

GAP_OPEN = "open"
GAP_CLOSE = "close"
# Close one gap by its unique key (a trade hole whose backfill succeeded):
# (market_ticker, channel, session_id, detected_at, recovered_at).
GAP_CLOSE_KEY = "close_key"


def gaps_apply(ops: Sequence[tuple]) -> int:
    """Open and close SequenceGap rows, in the order given, in one transaction.

    Each op is (GAP_OPEN, row in GAPS.columns order) or
    (GAP_CLOSE, (market_ticker, channel, recovered_at)) or
    (GAP_CLOSE_KEY, (market_ticker, channel, session_id, detected_at,
    recovered_at)), which closes that one gap only. Opening a gap that
    is already stored does nothing (unique on ticker, channel, session,
    detected_at); closing sets recovered_at on that ticker's open gaps of the
    channel detected at or before it, so applying the same ops twice changes
    nothing. Returns the number of rows opened or closed.
    """
    if not ops:
        return 0
    insert = (
        f"INSERT INTO sequence_gaps ({', '.join(GAPS.columns)}) "
        f"VALUES ({', '.join(['%s'] * len(GAPS.columns))}) ON CONFLICT DO NOTHING"
    )
    update = (
        "UPDATE sequence_gaps SET recovered_at = %s WHERE market_ticker = %s "
        "AND channel = %s AND recovered_at IS NULL AND detected_at <= %s"
    )
    # Both closes go through the partial index over open gaps (gaps_open_idx).
    update_key = (
        "UPDATE sequence_gaps SET recovered_at = %s WHERE market_ticker = %s "
        "AND channel = %s AND recovered_at IS NULL AND session_id = %s AND detected_at = %s"
    )
    changed = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            raw = cursor.cursor
            # Consecutive ops of one kind go in one executemany (pipelined).
            i = 0
            while i < len(ops):
                kind = ops[i][0]
                j = i
                while j < len(ops) and ops[j][0] == kind:
                    j += 1
                if kind == GAP_OPEN:
                    params = [list(op[1]) for op in ops[i:j]]
                    raw.executemany(insert, params)
                elif kind == GAP_CLOSE_KEY:
                    params = [(at, ticker, channel, session, detected)
                              for _, (ticker, channel, session, detected, at) in ops[i:j]]
                    raw.executemany(update_key, params)
                else:
                    params = [(at, ticker, channel, at) for _, (ticker, channel, at) in ops[i:j]]
                    raw.executemany(update, params)
                changed += max(raw.rowcount, 0)
                i = j
    return changed


def lifecycle_ingest(rows: Sequence[tuple]) -> int:
    """Store lifecycle messages (LIFECYCLE.columns order); a frame stored already is skipped."""
    if not rows:
        return 0
    sql = (
        f"INSERT INTO lifecycle_events ({', '.join(LIFECYCLE.columns)}) "
        f"VALUES ({', '.join(['%s'] * len(LIFECYCLE.columns))}) ON CONFLICT DO NOTHING"
    )
    payload_index = LIFECYCLE.index("payload")
    params = []
    for row in rows:
        row = list(row)
        if not isinstance(row[payload_index], str):
            # default=str: a payload decoded with Decimal numbers (see
            # kalshi/messages.py) keeps them as exact strings.
            row[payload_index] = json.dumps(row[payload_index], default=str)
        params.append(row)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.cursor.executemany(sql, params)
            return max(cursor.cursor.rowcount, 0)
