"""One market's rows of a record table over a time range, wherever they are kept.

A day of deltas, snapshots or trades lives in PostgreSQL until `archive`
has written it to the Parquet lake, verified it and dropped its partition
(markets/record/lake.py); from then on it lives only in the lake. Every
read of ticks that may reach such a day asks `rows()` here: the same query
runs on PostgreSQL for the days that are still hot and on the lake's day
files (through DuckDB) for the days that were dropped, and the two sorted
answers are merged. Rows come back with the same Python types either way:
exact Decimals with the column's scale, aware UTC datetimes, book levels as
[[price, size], ...] strings.

Which days are read from the lake is one rule: a day whose LakeDay has
`dropped_at` set. The drop and that mark are one transaction, so a day is
never read from both places, nor from neither.

Every call returns at most `limit` rows, and each day file is asked for at
most `limit` rows too: callers page through long ranges with keyset
batches, so memory stays bounded however long the range.
"""

from __future__ import annotations

import functools
import heapq
import json
import threading
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple, Sequence

import duckdb
import psycopg
from django.db import connection, models
from pyarrow import dataset as pads

from ..fixedpoint import format_count, format_price
from ..models import LakeDay, LakeMarketDay
from . import compact, packs
from .schema import RecordTable

LEVEL_COLUMNS = ("yes_levels", "no_levels")
_local = threading.local()


def fetchall_binary(sql: str, params: Sequence) -> list[tuple]:
    """All rows of a query, in PostgreSQL's binary format.

    Django's cursor binds parameters on the client and loads timestamps
    through a Python loader; psycopg's own binary loaders are C. On a
    1000-row page of deltas this is about 4x faster (6.5 ms -> 1.6 ms). The
    session's time zone is UTC (Django sets it), so times load as UTC.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors:
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, binary=True)
            return cursor.fetchall()


def batches(table: RecordTable, *, batch_size: int, first_batch_size: int | None = None,
            **query):
    """rows() in keyset batches (lists) of up to `batch_size` rows, in order.

    Each batch starts after the `order` key of the previous one's last row.
    With `first_batch_size`, batches start that small and
    double up to `batch_size`: for callers that may stop after a few rows.
    The market's column is looked up once for all the batches (a query each
    for deltas, compact.market_id).
    """
    query.setdefault("market", compact.market_column(table, query["market_ticker"]))
    columns = list(query["columns"])
    positions = [columns.index(c) for c in query["order"]]
    size = first_batch_size or batch_size
    while True:
        found = rows(table, limit=size, **query)
        if found:
            yield found
        if len(found) < size:
            return
        query["after"] = tuple(found[-1][p] for p in positions)
        size = min(size * 2, batch_size)


def levels(value) -> list:
    """Book levels as stored ([[price, size], ...]), whichever engine loaded them."""
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value or []


def _duckdb() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection (a connection is not shared between threads)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        # A day file is written once and never changed: keep its footer
        # (row groups' statistics) between queries instead of reading it for
        # each one.
        con.execute("SET parquet_metadata_cache = true")
        # Planning is about half of a read's cost here (one market, a time
        # range, a LIMIT, on one table). Reordering joins there are none of,
        # and late materialization (a self-join that still decodes the whole
        # row group of book levels to fetch one row), cost about 1 ms of an
        # archived book_at's two queries and gained nothing (measured).
        con.execute("SET disabled_optimizers = 'join_order,late_materialization'")
        # A read touches one or two row groups: a second worker thread only
        # adds hand-offs (and every thread of a server has a connection of
        # its own, each with its own pool). One thread took 7-9% less CPU
        # per archived book_at, alternating with two over three rounds.
        con.execute("SET threads = 1")
        _local.con = con
    return con


def _day(at: datetime) -> date:
    return at.astimezone(timezone.utc).date()


class ArchivedDay(NamedTuple):
    day: date
    path: str  # the day file, relative to LAKE_URL


def lake_days(table: RecordTable, first: date | None, last: date | None,
              market_ticker: str | None = None) -> list[ArchivedDay]:
    """The days of `table` in [first, last] (None: unbounded) served from the lake, in order.

    With `market_ticker`, only the days that hold rows of that market
    (LakeMarketDay): a market's quiet days cost no read of the lake. Every
    read of ticks asks this first, so it is one index probe in plain SQL
    (the ORM's query building cost about 0.8 ms of a 1 ms call).
    """
    sql = ('SELECT day, path FROM lake_days d WHERE "table" = %s AND dropped_at IS NOT NULL '
           "AND day >= %s AND day <= %s")
    params = [table.name, first or date.min, last or date.max]
    if market_ticker is not None:
        sql += (' AND EXISTS (SELECT 1 FROM lake_market_days m WHERE m."table" = d."table" '
                "AND m.day = d.day AND m.market_ticker = %s)")
        params.append(market_ticker)
    with connection.cursor() as cursor:
        cursor.execute(sql + " ORDER BY day", params)
        return [ArchivedDay(*row) for row in cursor.fetchall()]


def lake_bounds_sql(table: RecordTable, market_sql: str) -> str:
    """Two SQL subqueries: the first and last instant of a market's rows in the lake.

    Read from the bounds kept at archiving (LakeMarketDay), never from the
    files; `market_sql` is the SQL of the market's ticker.
    """
    dropped = (f"FROM lake_market_days l JOIN lake_days d ON d.\"table\" = l.\"table\" "
               f"AND d.day = l.day WHERE d.dropped_at IS NOT NULL AND l.\"table\" = "
               f"'{table.name}' AND l.market_ticker = {market_sql}")
    return f"(SELECT min(l.first_at) {dropped}), (SELECT max(l.last_at) {dropped})"


def lake_market_days(table: RecordTable, market_ticker: str, first: date, last: date):
    """The market's LakeMarketDays of `table` in [first, last] that are served from the lake."""
    return LakeMarketDay.objects.filter(
        table=table.name, market_ticker=market_ticker, day__gte=first, day__lte=last,
        day__in=LakeDay.objects.filter(table=table.name, dropped_at__isnull=False).values("day"),
    ).order_by("day")


def rows(
    table: RecordTable,
    *,
    market_ticker: str,
    columns: Sequence[str],
    order: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    until: datetime | None = None,
    column: str | None = None,
    days: tuple[datetime | None, datetime | None] | None = None,
    after: Sequence | None = None,
    where: str = "",
    descending: bool = False,
    limit: int,
    market: tuple[str, object] | None = None,
) -> list[tuple]:
    """Up to `limit` rows of one market, sorted by `order`, from PostgreSQL and the lake.

    The range is on `column` (the table's day column unless given):
    start <= column < end, or column <= until. `days` bounds the day column
    when the range is on another column (trades replayed by receive time
    are looked for in a window of exchange times). `after` is a keyset:
    only rows whose `order` key sorts after it (before it, `descending`).
    `where` is an extra condition written in SQL both engines speak (e.g.
    "source <> 'rest'"). `columns` must include every column of `order`;
    rows are tuples of `columns`. `market` is compact.market_column() of the
    market, when the caller has it already.
    """
    column = column or table.day_column
    if days is None:
        days = (start, end if end is not None else until) if column == table.day_column else (
            None, None)
    if days[0] is None and after is not None and order[0] == table.day_column and not descending:
        days = (after[0], days[1])
    first = _day(days[0]) if days[0] is not None else None
    last = _day(days[1]) if days[1] is not None else None
    archived = lake_days(table, first, last, market_ticker)
    sql, params = _sql(table, market_ticker, columns, order, column, start, end, until, days,
                       after, where, descending)
    # PostgreSQL is asked even when every day of the range is in the lake:
    # a late row (a backfilled trade) may have recreated a dropped day's
    # partition, and it is served with the lake's rows, not hidden.
    market, key = market or compact.market_column(table, market_ticker)
    select = ", ".join(columns)
    hot = None
    if table.stored is None:
        hot = fetchall_binary(sql.format(source=table.db_table, mark="%s", select=select,
                                         market=market), [key, *params[1:], limit])
    elif days[0] is not None and not packs.may_be_packed(days[0]):
        # Today's deltas only: no chunk can hold them yet (markets/record/packs.py).
        hot = fetchall_binary(sql.format(source=packs.LOOSE_VIEW, mark="%s", select=select,
                                         market=market), [key, *params[1:], limit])
        if packs.may_be_packed(days[0]):  # midnight passed meanwhile: ask the chunks too
            hot = None
    if hot is None:
        # Deltas: the loose rows and the chunks that overlap the range
        # (markets/record/packs.py), each sorted and limited, then merged.
        packed, packed_params = _sql(table, key, columns, order, column, start, end,
                                     until, days, after, where, descending, packed=True,
                                     limit=limit)
        direction = " DESC" if descending else ""
        hot = fetchall_binary(
            f"({sql}) UNION ALL ({packed}) ORDER BY "
            f"{', '.join(c + direction for c in order)} LIMIT %s".format(
                mark="%s", select=select, market=market, source=packs.LOOSE_VIEW,
                packed_source=packs.PACKED_VIEW),
            [key, *params[1:], limit, *packed_params, limit, limit])
    if not archived:
        return hot
    cold = _lake_rows(table, archived, sql, params, columns, order, descending, limit)
    if not hot:
        return cold
    positions = [list(columns).index(c) for c in order]

    def key(row):
        return tuple(row[p] for p in positions)

    merged = heapq.merge(hot, cold, key=key, reverse=descending)
    return [row for row, _ in zip(merged, range(limit))]


def lake_rows(table: RecordTable, *, market_ticker: str, columns: Sequence[str],
              order: Sequence[str], start: datetime, end: datetime,
              batch_size: int = 10_000) -> list[tuple]:
    """Only the lake's rows of one market with start <= day column < end, in `order`.

    For the few writes that must see a dropped day's rows beside a late
    row (a candle bar recomputed for a late trade, markets/candles.py);
    reads use rows(). Callers keep the range short (a minute).
    """
    archived = lake_days(table, _day(start), _day(end), market_ticker)
    found: list[tuple] = []
    after = None
    while archived:
        sql, params = _sql(table, market_ticker, columns, order, table.day_column, start, end,
                           None, (start, end), after, "", False)
        batch = _lake_rows(table, archived, sql, params, columns, order, False, batch_size)
        found.extend(batch)
        if len(batch) < batch_size:
            break
        positions = [list(columns).index(c) for c in order]
        after = tuple(batch[-1][p] for p in positions)
    return found


def _sql(table, market_ticker, columns, order, column, start, end, until, days, after, where,
         descending, packed=False, limit=None):
    """The query: {select} for its columns, {source} for the table, {market} for the
    column that picks the market (its first parameter), {mark} for a placeholder.

    `packed`: the query on the unpacked chunks of deltas instead ({packed_source}),
    of the chunks that overlap the range and can hold the first `limit` rows
    only, sorted chunk by chunk (markets/record/packs.py); then `market_ticker`
    is the market's id.
    """
    direction = " DESC" if descending else ""
    conditions, params = ["{market} = {mark}"], [market_ticker]
    if start is not None:
        conditions.append(f"{column} >= {{mark}}")
        params.append(start)
    if end is not None:
        conditions.append(f"{column} < {{mark}}")
        params.append(end)
    if until is not None:
        conditions.append(f"{column} <= {{mark}}")
        params.append(until)
    if column != table.day_column:
        if days[0] is not None:
            conditions.append(f"{table.day_column} >= {{mark}}")
            params.append(days[0])
        if days[1] is not None:
            conditions.append(f"{table.day_column} < {{mark}}")
            params.append(days[1])
    if after is not None:
        # The plain bound on the leading column lets both engines skip
        # partitions and row groups before the keyset.
        conditions.append(f"{order[0]} {'<=' if descending else '>='} {{mark}}")
        params.append(after[0])
        marks = ", ".join(["{mark}"] * len(order))
        conditions.append(f"({', '.join(order)}) {'<' if descending else '>'} ({marks})")
        params.extend(after)
    if where:
        conditions.append(where)
    source, sort = "{source}", list(order)
    if packed:
        assert column == table.day_column == "received_at"
        keyset = after[0] if after is not None else None
        lo = keyset if keyset is not None and not descending else start
        hi = keyset if keyset is not None and descending else (end if end is not None else until)
        # A condition written in SQL here hides how many rows each chunk gives.
        chunks, chunk_params = packs.read_sql("{mark}", market_ticker, lo, hi,
                                              None if where else limit, descending)
        conditions.append(chunks)
        params.extend(chunk_params)
        source, sort = "{packed_source}", [packs.CHUNK_ORDER, *order]
    sql = (f"SELECT {{select}} FROM {source} WHERE {' AND '.join(conditions)} "
           f"ORDER BY {', '.join(c + direction for c in sort)} LIMIT {{mark}}")
    return sql, params


def _lake_rows(table, archived, sql, params, columns, order, descending, limit) -> list[tuple]:
    """The query on the day files: day by day when days sort as the rows do."""
    by_day = order[0] == table.day_column
    groups = ([[d] for d in (reversed(archived) if descending else archived)] if by_day
              else [archived])
    select, convert = _lake_columns(table, tuple(columns))
    found: list[tuple] = []
    for group in groups:
        with _day_files(table, group) as (source, source_params):
            text = sql.format(source=source, mark="?", select=select, market="market_ticker")
            found.extend(_duckdb().execute(
                text, [*source_params, *params, limit - len(found)]).fetchall())
        if len(found) >= limit:
            break
    if not found:
        return []
    # Column by column: most columns need no conversion, and zip() is C.
    values = list(zip(*found))
    for i, f in enumerate(convert):
        if f is not None:
            values[i] = map(f, values[i])
    return list(zip(*values))


@contextmanager
def _day_files(table: RecordTable, days: list[ArchivedDay]):
    """(SQL of a relation over the days' files, its parameters), for DuckDB.

    A local lake is read by DuckDB itself; an object store through pyarrow's
    file system (markets/objectstore.py), as a dataset that DuckDB scans
    with the query's filters pushed down. A file may store exchange times in
    milliseconds, another in microseconds (markets/export.py): DuckDB reads
    both as its microsecond TIMESTAMPTZ, but a pyarrow dataset takes the
    first file's types unless told, and a microsecond that does not fit
    them fails the read, so it is given the files' schema in microseconds.
    """
    from ..export import TABLES, schema  # export imports this package
    from .lake import lake_location  # lake.py imports the export machinery

    location = lake_location()
    if location.local_path is not None:
        yield "read_parquet(?)", [[str(location.local_path / day.path) for day in days]]
        return
    dataset = pads.dataset([location.path(day.path) for day in days],
                           schema=schema(TABLES[table.name]),
                           filesystem=location.filesystem, format="parquet")
    name = f"lake_files_{threading.get_ident()}"
    con = _duckdb()
    con.register(name, dataset)
    try:
        yield name, []
    finally:
        con.unregister(name)


@functools.cache
def _lake_columns(table: RecordTable, columns: tuple[str, ...]) -> tuple[str, tuple]:
    """The lake query's select list, and per column what makes its value PostgreSQL's.

    Times leave DuckDB as microseconds since the epoch and decimals as
    integers in units of the column's last place: DuckDB's own conversion
    to datetime and Decimal cost about 1.5 us a value (2 ms of a 250-row
    read); here a time is one addition, aware in timezone.utc as psycopg
    loads it, and a decimal is Decimal(units) shifted by the column's scale,
    as PostgreSQL gives it (0.2 us each). Book levels become
    [[price, size], ...] strings. None: the value is the same either way.
    """
    select, convert = [], []
    for name in columns:
        field = table.model._meta.get_field(name)
        if name in LEVEL_COLUMNS:
            select.append(name)
            convert.append(_levels_strings)
        elif isinstance(field, models.DateTimeField):
            select.append(f"epoch_us({name})")
            convert.append(_time)
        elif isinstance(field, models.DecimalField):
            select.append(f"CAST({name} * {10 ** field.decimal_places} AS BIGINT)")
            convert.append(_decimal(field.decimal_places))
        else:
            select.append(name)
            convert.append(None)  # as DuckDB gives it
    return ", ".join(select), tuple(convert)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _time(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def _decimal(places: int):
    def convert(units: int | None) -> Decimal | None:
        return None if units is None else Decimal(units).scaleb(-places)
    return convert


def _levels_strings(value) -> list:
    return [[format_price(level["price"]), format_count(level["size"])] for level in value or ()]
