"""Day files: the record as a hive-partitioned Parquet (or gzip CSV) dataset.

    OUT/type=deltas/date=2026-11-23/part-0.parquet
    OUT/type=trades/date=2026-11-23/part-0.parquet
    OUT/type=snapshots/...  type=lifecycle/...  type=gaps/...  type=settlements/...

One folder per table and UTC day of the table's partition column (deltas,
snapshots, lifecycle: receive time; trades: exchange time; gaps: detection;
settlements: settlement time). Rows are sorted by market, then in replay
order, so one market's rows are contiguous: a reader that filters on a
market skips the other row groups by their statistics, and reads that
market's rows already in the order they were received.

Types are exact: prices and counts are Parquet DECIMAL with the column's
precision and scale (stored as integers), times are timestamps adjusted to
UTC, in microseconds; exchange times (EXCHANGE_TIMES) in milliseconds when
every one of the file is a whole millisecond, as Kalshi's `ts_ms` are
(_RowGroupWriter). A day with no rows still gets its (empty) file, so that
"exported and empty" differs from "not exported".

How: PostgreSQL streams each day's rows as CSV (COPY ... TO STDOUT: NUMERIC
printed exactly, no Python objects per row) into Arrow's streaming CSV
reader, which parses them straight into typed columns, and the Parquet
writer writes them out one row group at a time. Memory is bounded by
ROW_GROUP_ROWS whatever the size of the day. For CSV, the COPY output goes
through gzip unchanged. Files are written under a temporary name and renamed,
so nobody ever reads half a file.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from django.contrib.postgres.fields import ArrayField
from django.db import connection, models

from .fixedpoint import parse_count, parse_price
from .models import LakeDay, Market, Settlement
from .models.fields import COUNT_PLACES, PRICE_PLACES
from .record import packs
from .record.schema import DELTAS, GAPS, LIFECYCLE, SNAPSHOTS, TRADES, RecordTable

FORMATS = ("parquet", "csv")
# Rows per Parquet row group, and bytes per block of CSV parsed at a time:
# together they bound memory. Measured on the 1,000,000-delta day: 256k rows
# and 8 MB blocks peaked at 300 MB; these at about 220 MB, and faster.
ROW_GROUP_ROWS = 128 * 1024
# Rows per Parquet data page, with a page index: a read of one market's few
# rows decodes only the pages that may hold them (_encodings says what it costs).
PAGE_ROWS = 16 * 1024
CSV_BLOCK_BYTES = 1 << 20
ZSTD_LEVEL = 3
# Exchange times: stored in milliseconds when a file's are all whole (_RowGroupWriter),
# at a zstd level that packs them far better when they fall back to microseconds (_encodings).
EXCHANGE_TIMES = ("ts",)
EXCHANGE_TIME_ZSTD_LEVEL = 19
UNIQUE_TEXT = ("trade_id",)  # one value per row: no dictionary
GZIP_LEVEL = 6
UTC_MICROS = pa.timestamp("us", tz="UTC")
UTC_MILLIS = pa.timestamp("ms", tz="UTC")
_SQL_ISO_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'

LEVEL_TYPE = pa.struct([
    ("price", pa.decimal128(10, PRICE_PLACES)),
    ("size", pa.decimal128(18, COUNT_PLACES)),
])
LEVELS_TYPE = pa.list_(LEVEL_TYPE)


@dataclass(frozen=True)
class Table:
    """How one table is exported."""

    name: str  # the `type=` folder
    model: type[models.Model]
    day_column: str  # its rows go to the folder of this column's UTC day
    columns: tuple[str, ...]
    order_by: str  # market first, then replay order
    # rows that belong to `tickers`; %(tickers)s is the list
    ticker_filter: str = "market_ticker = ANY(%(tickers)s)"


def _record(record: RecordTable, columns: tuple[str, ...] | None = None, **kwargs) -> Table:
    """A record table's day files: its columns, by its day column, market then replay order."""
    return Table(record.name, record.model, record.day_column, columns or record.columns,
                 f"market_ticker, {record.order_sql()}", **kwargs)


TABLES = {
    t.name: t
    for t in (
        _record(DELTAS),
        _record(TRADES),
        _record(SNAPSHOTS),
        _record(LIFECYCLE, LIFECYCLE.columns + ("id",),
                # event-wide messages of the markets' events come along
                ticker_filter="(market_ticker = ANY(%(tickers)s) OR (market_ticker = '' AND "
                "event_ticker IN (SELECT event_ticker FROM markets WHERE ticker = ANY(%(tickers)s))))"),
        _record(GAPS, ("market_ticker", "channel", "reason", "detected_at", "recovered_at",
                       "session_id", "sid", "expected_seq", "received_seq", "tickers_on_sid",
                       "id"),
                # channel-wide gaps concern every market
                ticker_filter="(market_ticker = ANY(%(tickers)s) OR market_ticker = '')"),
        Table("settlements", Settlement, "settled_at",
              ("market_ticker", "event_ticker", "result", "settlement_value",
               "determined_at", "settled_at", "source", "metadata"),
              "market_ticker"),
    )
}
TABLE_NAMES = tuple(TABLES)


@dataclass
class ExportedFile:
    table: str
    day: date
    path: Path
    rows: int
    bytes: int


# --- types ---------------------------------------------------------------------


def arrow_type(field: models.Field) -> pa.DataType:
    """The exact Arrow type of a model field."""
    if isinstance(field, ArrayField):
        return pa.list_(arrow_type(field.base_field))
    if isinstance(field, models.DecimalField):
        return pa.decimal128(field.max_digits, field.decimal_places)
    if isinstance(field, models.DateTimeField):
        return UTC_MICROS
    if isinstance(field, models.BooleanField):
        return pa.bool_()
    if isinstance(field, (models.BigIntegerField, models.BigAutoField)):
        return pa.int64()
    if isinstance(field, models.IntegerField):
        return pa.int32()
    if isinstance(field, (models.TextField, models.CharField, models.JSONField)):
        return pa.string()  # JSON travels as its text
    raise TypeError(f"no Arrow type for {field!r}")


def _field(table: Table, column: str) -> models.Field:
    return table.model._meta.get_field(column)


def _is_levels(table: Table, column: str) -> bool:
    return table.name == "snapshots" and column in ("yes_levels", "no_levels")


def schema(table: Table) -> pa.Schema:
    """The Arrow schema of a table's files, every time in microseconds.

    A file may store its exchange times in milliseconds instead
    (_RowGroupWriter); read with this schema, every file has these types,
    exactly (milliseconds become microseconds without loss).
    """
    fields = []
    for column in table.columns:
        field = _field(table, column)
        kind = LEVELS_TYPE if _is_levels(table, column) else arrow_type(field)
        fields.append(pa.field(column, kind, nullable=field.null))
    return pa.schema(fields, metadata={
        "kalshi_data.table": table.name,
        "kalshi_data.sorted_by": table.order_by,
    })


def _select_expression(table: Table, column: str) -> str:
    field = _field(table, column)
    if isinstance(field, models.DateTimeField):
        return f"to_char({column} AT TIME ZONE 'UTC', '{_SQL_ISO_FORMAT}')"
    if isinstance(field, ArrayField):
        return f"array_to_json({column})::text"
    if isinstance(field, (models.JSONField, models.BooleanField)):
        return f"{column}::text"  # JSON text; true/false
    return column


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def copy_sql(table: Table, tickers: Sequence[str] | None, *, header: bool) -> tuple[str, dict]:
    """The COPY statement that streams one day of `table` as CSV, and its parameters."""
    select = ", ".join(f"{_select_expression(table, c)} AS {c}" for c in table.columns)
    where = f"{table.day_column} >= %(start)s AND {table.day_column} < %(end)s"
    if tickers is not None:
        where += f" AND {table.ticker_filter}"
    options = "FORMAT csv, HEADER" if header else "FORMAT csv"
    sql = (
        f"COPY (SELECT {select} FROM {_source(table)} WHERE {where} "
        f"ORDER BY {table.order_by}) TO STDOUT WITH ({options})"
    )
    return sql, {"tickers": list(tickers or ())}


def _source(table: Table) -> str:
    """What a day is read from: for deltas, the loose rows and the day's chunks only."""
    if table.name == DELTAS.name:
        return packs.day_source("%(start)s", "%(end)s")
    return table.model._meta.db_table


# --- writing -------------------------------------------------------------------


def file_path(out_dir: Path, table: str, day: date, fmt: str) -> Path:
    suffix = "parquet" if fmt == "parquet" else "csv.gz"
    return Path(out_dir) / f"type={table}" / f"date={day.isoformat()}" / f"part-0.{suffix}"


class _CopyReader:
    """A read()-able file over a COPY TO STDOUT, for Arrow's CSV reader."""

    def __init__(self, copy):
        self._chunks = iter(copy)  # libpq hands over COPY data a row at a time
        self._rest = b""
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        parts, length = [self._rest], len(self._rest)
        while size < 0 or length < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            parts.append(chunk)
            length += len(chunk)
        data = b"".join(parts)
        if 0 <= size < len(data):
            data, self._rest = data[:size], data[size:]
        else:
            self._rest = b""
        return data

    def is_empty(self) -> bool:
        """True if the COPY sent no row at all (Arrow refuses an empty CSV)."""
        if not self._rest:
            self._rest = bytes(next(self._chunks, b""))
        return not self._rest

    def close(self):
        self.closed = True


def _levels_array(values: pa.Array) -> pa.Array:
    """Stored [[price, size], ...] JSON text as a list of exact (price, size) structs."""
    return pa.array(
        [
            None if text is None else [
                {"price": parse_price(p), "size": parse_count(s)} for p, s in json.loads(text)
            ]
            for text in values.to_pylist()
        ],
        type=LEVELS_TYPE,
    )


def _json_list_array(values: pa.Array, kind: pa.DataType) -> pa.Array:
    return pa.array([None if t is None else json.loads(t) for t in values.to_pylist()],
                    type=kind)


def _leaves(field: pa.Field) -> list[tuple[str, pa.DataType, bool]]:
    """(Parquet column path, type, inside a list) of each leaf column of `field`."""
    if not pa.types.is_list(field.type):
        return [(field.name, field.type, False)]
    item = field.type.value_type
    prefix = f"{field.name}.list.element"
    if pa.types.is_struct(item):
        return [(f"{prefix}.{child.name}", child.type, True) for child in item]
    return [(prefix, item, True)]


def _encodings(target: pa.Schema, first: pa.Table | None = None) -> dict:
    """Parquet encodings and zstd levels by leaf column, chosen by measurement.

    bench/storage_bench.py's full-exchange-like mix (1.9M deltas, 5,000
    markets; its day files rewritten with each choice). Bytes per delta, zstd
    3 unless said:

    - Times and 64-bit integers (session ids, seq) grow within a market, and
      rows are sorted by market: DELTA_BINARY_PACKED stores the differences.
      received_at 2.84 (plain 3.38, byte-stream-split 3.25), seq 1.45 (plain
      1.87, split 1.66), ts in microseconds 2.89 (plain 3.30, split 3.28).
    - Exchange times (`ts`) are whole milliseconds (Kalshi's `ts_ms`), stored
      as TIMESTAMP(MILLIS) when all of a file's are (_RowGroupWriter): 1.71
      against 2.68 as microseconds, the deltas file 9.16 against 10.13 (the
      bench's day, written both ways). Stored as microseconds, their packed
      differences are all multiples of 1000, which zstd finds at level 18
      and up: 2.89 at level 3, 2.85 at 9, 2.69 at 15, 2.68 at 19, for 0.02 to
      0.04 s more per 100,000 rows; in milliseconds the level hardly matters
      (1.72 at 3, 1.71 at 19, 0.005 s more per 100,000 rows), so
      EXCHANGE_TIME_ZSTD_LEVEL stays for the files that fall back to
      microseconds, most of whose values are still whole milliseconds.
      Receive times are real microseconds: no level helps them once the
      bench's evenly spaced clock is jittered (2.99 at 3, 9, 15 and 19), so
      they stay at ZSTD_LEVEL.
    - Counts (`delta`, a trade's `count`, a book level's size) go either way,
      so each file tries both on its first row group (`first`) and keeps the
      smaller. The bench's counts are uniform over 1 to 20,000 and signed:
      delta-packed, `delta` takes 2.13 (dictionary 2.74, a quarter of it the
      dictionary page written again in every row group; plain 2.80, split
      3.15), a trade's count 0.030 (0.059), level sizes 0.27 a side (0.42).
      bench/lake_read_bench.py's day has round lots (about 1,500 values):
      there a dictionary wins, `delta` 1.79 bytes against 2.40, level sizes
      0.064 against 0.074, and a fixed choice would lose 3% of that lake.
    - A book level's price is a tick from the previous level's: delta-packed,
      0.03 a side (a dictionary costs 0.16).
    - Prices of deltas and trades take about a hundred values: dictionary,
      0.85 (delta-packed 1.69, plain 1.39). DECIMAL(10, 4) cannot be INT32
      (precision 10 > 9), nor DECIMAL(18, 2).
    - Trade ids are unique: DELTA_LENGTH_BYTE_ARRAY (the lengths packed, the
      bytes run together for zstd), 0.210 (DELTA_BYTE_ARRAY 0.216, plain
      0.226, dictionary 0.250); on lake_read_bench's day, whose ids are UUIDs,
      3.68, 3.76, 3.96 and 4.02 bytes per delta.
    - Every other column (tickers, sides, sources, sids) repeats: dictionary.

    Pages hold PAGE_ROWS rows and the file has a page index (each page's
    min/max and offset), which DuckDB uses to skip the pages of a row group
    that cannot hold the market and time range a read asks for: an archived
    book's delta query took 2.2 ms of CPU instead of 3.3 (bench/
    lake_read_bench.py's day, six alternating rounds). Smaller pages compress
    a little worse; deltas per page, in bytes per delta on storage_bench's
    mix against one page per row group (9.88): 8k rows 10.27 (read 2.1 ms),
    16k 10.13, 32k 10.03 (read 2.4 ms); without the index, pages alone gained
    nothing (20,000 rows, six alternating rounds of book_at). Larger row
    groups would save little more (256k rows: 0.07) and cost memory and the
    per-market skipping of reads. Deltas went from 11.0 to 9.9 bytes each,
    then to 10.1 for the page index, then to 9.16 with `ts` in milliseconds;
    snapshots 0.75 to 0.62, trades 0.46 to 0.38, then 0.37.

    The floor, with each market's rows together in replay order, is near:
    the differences of receive times, exchange times and seq are about 20,
    20 and 8 bits a row in the raw, and Parquet codes each column alone (the
    exchange time is the receive time minus a short lag; seq follows both).
    Rows sorted by time alone, as in a vendor's file, reach 6.1 on the
    bench's evenly spaced clock, but spread a market over every row group.
    """
    dictionary, encoding, level = [], {}, {}
    for field in target:
        for path, kind, in_list in _leaves(field):
            level[path] = ZSTD_LEVEL
            if pa.types.is_timestamp(kind) or pa.types.is_int64(kind):
                encoding[path] = "DELTA_BINARY_PACKED"
                if field.name in EXCHANGE_TIMES:
                    level[path] = EXCHANGE_TIME_ZSTD_LEVEL
            elif pa.types.is_decimal(kind) and kind.scale != PRICE_PLACES:  # a count
                if first is not None and _dictionary_is_smaller(_leaf_values(first, path)):
                    dictionary.append(path)
                else:
                    encoding[path] = "DELTA_BINARY_PACKED"
            elif pa.types.is_decimal(kind) and in_list:  # a book level's price
                encoding[path] = "DELTA_BINARY_PACKED"
            elif field.name in UNIQUE_TEXT:
                encoding[path] = "DELTA_LENGTH_BYTE_ARRAY"
            else:
                dictionary.append(path)
    return {"use_dictionary": dictionary, "column_encoding": encoding,
            "compression_level": level}


def _leaf_values(rows: pa.Table, path: str) -> pa.ChunkedArray:
    """The values of one leaf column (a _leaves() path), lists flattened."""
    name, _, rest = path.partition(".list.element")
    values = rows.column(name)
    if not rest and name == path:
        return values
    values = pc.list_flatten(values)
    return pc.struct_field(values, rest[1:]) if rest else values


def _dictionary_is_smaller(column: pa.ChunkedArray) -> bool:
    """Whether a dictionary stores these values in fewer bytes than delta-packing them."""
    sizes = []
    for options in ({"use_dictionary": True},
                    {"use_dictionary": False, "column_encoding": "DELTA_BINARY_PACKED"}):
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"values": column}), sink, compression="zstd",
                       compression_level=ZSTD_LEVEL, store_decimal_as_integer=True, **options)
        sizes.append(sink.getvalue().size)
    return sizes[0] < sizes[1]


def _in_millis(target: pa.Schema) -> pa.Schema:
    """`target` with its exchange times (EXCHANGE_TIMES) in milliseconds."""
    for name in EXCHANGE_TIMES:
        index = target.get_field_index(name)
        if index >= 0:
            target = target.set(index, target.field(index).with_type(UTC_MILLIS))
    return target


class _RowGroupWriter:
    """Batches in, row groups of exactly ROW_GROUP_ROWS rows out (the last one
    shorter). The file is opened at the first row group, whose rows choose the
    encodings (_encodings).

    (Writing whatever had piled up left a small row group behind each full
    one, each with its own dictionaries: 27 row groups instead of 15 for 1.9M
    deltas.)

    Exchange times arrive in microseconds (`target`) and are stored in
    milliseconds while every one is a whole millisecond, as Kalshi's `ts_ms`
    are (_encodings says what it saves). Each row group is cast with
    Arrow's safe cast, which refuses to drop a digit. The RFC 3339 `ts` of
    older frames and of trades backfilled over REST can carry microseconds:
    at the first such value the file goes over to microseconds for good,
    and the row groups already written are rewritten in them (exactly: a
    millisecond is a whole number of microseconds), one at a time. That
    costs what was written so far, and no second read of the day (leaving
    a COPY early cancels it, which aborts the caller's transaction).
    """

    def __init__(self, path: Path, target: pa.Schema):
        self.path, self.target = path, target
        self.stored = _in_millis(target)  # the file's schema, until a value says otherwise
        self._writer: pq.ParquetWriter | None = None
        self._options: dict = {}
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None and (self._pending or self._writer is None):
                self._write(pa.Table.from_batches(self._pending, self.target))
        finally:
            if self._writer is not None:
                self._writer.close()

    def add(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            ready = pa.Table.from_batches(self._pending, self.target)
            whole = self._pending_rows - self._pending_rows % ROW_GROUP_ROWS
            self._write(ready.slice(0, whole))
            self._pending = ready.slice(whole).to_batches()
            self._pending_rows -= whole

    def _write(self, rows: pa.Table) -> None:
        if self.stored != self.target:
            try:
                stored = rows.cast(self.stored)  # safe: raises rather than truncates
            except pa.ArrowInvalid:
                self._in_micros()
            else:
                rows = stored
        if self._writer is None:
            self._options = _encodings(self.stored, rows.slice(0, ROW_GROUP_ROWS))
            self._writer = self._open(self.path)
        self._writer.write_table(rows, row_group_size=ROW_GROUP_ROWS)

    def _open(self, path: Path) -> pq.ParquetWriter:
        return pq.ParquetWriter(
            path, self.stored, compression="zstd", store_decimal_as_integer=True,
            max_rows_per_page=PAGE_ROWS, write_page_index=True, **self._options)

    def _in_micros(self) -> None:
        """Store exchange times in microseconds from now on, and rewrite what was written."""
        self.stored = self.target
        if self._writer is None:
            return
        self._writer.close()
        written = self.path.with_name(self.path.name + ".millis")
        os.replace(self.path, written)
        try:
            self._writer = self._open(self.path)
            with pq.ParquetFile(written) as millis:
                for index in range(millis.num_row_groups):
                    self._writer.write_table(millis.read_row_group(index).cast(self.target),
                                             row_group_size=ROW_GROUP_ROWS)
        finally:
            written.unlink()


def _write_parquet(table: Table, sql: str, params: dict, path: Path) -> int:
    target = schema(table)
    # What Arrow parses from the CSV: nested columns arrive as JSON text.
    parsed_types = {
        f.name: (pa.string() if pa.types.is_list(f.type) else f.type) for f in target
    }
    nested = [f for f in target if pa.types.is_list(f.type)]
    rows = 0
    with connection.cursor() as cursor, cursor.cursor.copy(sql, params) as copy:
        source = _CopyReader(copy)
        if source.is_empty():
            with _RowGroupWriter(path, target):
                pass  # an empty file with the schema: exported, and empty
            return 0
        reader = pa_csv.open_csv(
            source,
            read_options=pa_csv.ReadOptions(
                column_names=list(table.columns), block_size=CSV_BLOCK_BYTES
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=parsed_types,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,  # "" is an empty string, not NULL
                null_values=[""],
                true_values=["true"],
                false_values=["false"],
            ),
        )
        with _RowGroupWriter(path, target) as writer:
            for batch in reader:
                if nested:
                    columns = [
                        batch.column(f.name) if f not in nested
                        else (_levels_array(batch.column(f.name)) if f.type == LEVELS_TYPE
                              else _json_list_array(batch.column(f.name), f.type))
                        for f in target
                    ]
                    batch = pa.RecordBatch.from_arrays(columns, schema=target)
                else:
                    batch = pa.RecordBatch.from_arrays(batch.columns, schema=target)
                writer.add(batch)
                rows += batch.num_rows
    return rows


def _write_csv(sql: str, params: dict, path: Path) -> int:
    newlines = 0
    with connection.cursor() as cursor, cursor.cursor.copy(sql, params) as copy:
        with gzip.open(path, "wb", compresslevel=GZIP_LEVEL) as out:
            for chunk in copy:
                out.write(chunk)
                newlines += bytes(chunk).count(b"\n")
    return newlines  # rows + header, minus line breaks inside quoted values (rare)


def export_day(
    *, table: str, day: date, out_dir: Path, fmt: str = "parquet",
    tickers: Sequence[str] | None = None,
) -> ExportedFile:
    """Write one table's day file; return what was written.

    A day whose partition `archive` dropped is no longer in PostgreSQL: it
    is refused (ValueError) rather than written as an empty file; its day
    file is in the lake already (markets/record/lake.py).
    """
    spec = TABLES[table]
    dropped = LakeDay.objects.filter(table=table, day=day, dropped_at__isnull=False).first()
    if dropped is not None:
        raise ValueError(f"{table} {day} was moved to the lake: read {dropped.path} under "
                         "LAKE_URL")
    path = file_path(out_dir, table, day, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    sql, params = copy_sql(spec, tickers, header=(fmt == "csv"))
    params.update(start=_midnight(day), end=_midnight(day) + timedelta(days=1))
    partial = path.with_name(path.name + ".partial")
    try:
        if fmt == "parquet":
            rows = _write_parquet(spec, sql, params, partial)
        else:
            rows = max(_write_csv(sql, params, partial) - 1, 0)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return ExportedFile(table, day, path, rows, path.stat().st_size)


def export_dataset(
    *, start_date: date, end_date: date, out_dir: Path, fmt: str = "parquet",
    tickers: Sequence[str] | None = None, tables: Iterable[str] = TABLE_NAMES,
    progress: Callable[[ExportedFile], None] | None = None,
) -> list[ExportedFile]:
    """Export every table of `tables` for every UTC day from start_date to end_date."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    tables = list(tables)
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables: {', '.join(sorted(unknown))}")
    written = []
    day = start_date
    while day <= end_date:
        for table in tables:
            exported = export_day(table=table, day=day, out_dir=out_dir, fmt=fmt,
                                  tickers=tickers)
            written.append(exported)
            if progress:
                progress(exported)
        day += timedelta(days=1)
    return written


def series_tickers(series_ticker: str) -> list[str]:
    """The markets of a series, by the hierarchy (market rows or their events)."""
    from .models import Event

    events = Event.objects.filter(series_ticker=series_ticker).values("event_ticker")
    return sorted(
        Market.objects.filter(series_ticker=series_ticker).values_list("ticker", flat=True)
        .union(Market.objects.filter(event_ticker__in=events).values_list("ticker", flat=True))
    )


# --- reading back what was written (the API's listing and download) -----------

_FILE_RE = re.compile(
    r"^type=(?P<table>[a-z_]+)/date=(?P<day>\d{4}-\d{2}-\d{2})/"
    r"(?P<name>part-\d+\.(?P<format>parquet|csv\.gz))$"
)


@dataclass
class DatasetFile:
    path: str  # relative to the dataset root, with forward slashes
    table: str
    day: date
    format: str
    bytes: int
    modified: datetime


def _dataset_file(root: Path, relative: str) -> DatasetFile | None:
    match = _FILE_RE.match(relative)
    if not match or match["table"] not in TABLES:
        return None
    try:
        day = date.fromisoformat(match["day"])
    except ValueError:
        return None
    stat = (root / relative).stat()
    return DatasetFile(
        path=relative, table=match["table"], day=day,
        format="parquet" if match["format"] == "parquet" else "csv",
        bytes=stat.st_size,
        modified=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
    )


def dataset_files(root: Path) -> list[DatasetFile]:
    """Every finished day file under `root`, sorted by path (table, then day).

    A symlink whose target lies outside `root` is not listed (dataset_file
    would not serve it either): the listing must not reveal other files.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        return []
    found = []
    for path in root.glob("type=*/date=*/part-*"):
        if root in path.resolve().parents and path.is_file():
            info = _dataset_file(root, path.relative_to(root).as_posix())
            if info is not None:
                found.append(info)
    return sorted(found, key=lambda f: f.path)


def dataset_file(root: Path, relative: str) -> Path | None:
    """The file at `relative` under `root`, or None.

    Only names the exporter writes are served (type=T/date=D/part-N.ext), so
    no "..", absolute path, symlink out of the root or stray file is reachable.
    """
    root = Path(root).resolve()
    if not _FILE_RE.match(relative or ""):
        return None
    path = (root / relative).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path
