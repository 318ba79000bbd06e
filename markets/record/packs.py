"""Closed days' deltas, several to a row: the chunk rule and the range predicate.

A delta row costs about 85 bytes of heap and 40 of packed key however its
columns are shrunk (a tuple header, a line pointer, a key entry each:
docs/storage.md), so PostgreSQL cannot hold a delta in 100 bytes one row
each. Once a UTC day has closed, `pack_day()` (run by `manage.py archive`,
markets/partitioning.py) moves each market's deltas of that day out of
`orderbook_delta_rows` into `orderbook_delta_packs` (migration 0008): one
row per chunk, holding the chunk's first and last `received_at`, its count,
and each stored column as an array in replay order, which TOAST compresses.

The chunk rule: at most MAX_DELTAS consecutive deltas (replay order) of one
market within one SPAN-aligned stretch of time. A chunk therefore never
lasts SPAN or longer, so the chunks that overlap [lo, hi] are found in the
index (market_id, first_at, last_at) by `first_at > lo - SPAN AND first_at
<= hi AND last_at >= lo` without reading any chunk; and a chunk is small, so
a short range unpacks little.

MAX_DELTAS, measured on storage_bench's day (docs/storage.md; the packed
deltas' bytes, then book_at of the hottest market and a 1000-row /deltas
page deep in its day, p50, packed): 128 deltas 30.1 bytes a delta, 3.7 to
5.3 ms and 5.2 to 7.1 ms over two runs; 256 28.1 bytes, 4.5 to 4.8 ms and
5.8 to 8.2 ms; 1024 26.3 bytes (most chunks end at their hour first: 170
deltas on average), 6.2 and 13.5 ms. Between 128 and 256 the reads differ
less than the machine's noise, so 256 keeps the bytes. SPAN (an hour)
bounds how far before a range the index must look; not tuned.

Readers see packed deltas through the view `orderbook_deltas` (loose rows
UNION ALL unpacked chunks). A view cannot turn a bound on `received_at` into
one on the chunks, and PostgreSQL would sort every unpacked delta of the
market before a LIMIT: reads of a range (markets/record/reads.py) take
their condition on the chunks from `read_sql()` (the range, and no more
chunks than the LIMIT needs) and sort the unpacked rows by chunk first
(`pack_first_at`), which is replay order because one market's chunks never
overlap. Whole-day reads take `day_source()`.

Late deltas of a packed day land as loose rows (the partition stays); the
next packing of the day repacks the markets they belong to, so chunks never
overlap. Writers that must not store a delta twice ask `contains_sql()`.

The chunks' table is partitioned by the UTC day of `first_at` (migration
0009; a chunk never crosses an hour, so never a day): `pack_day()` creates
a day's partition, and the lake drops it with the day (`drop_day()`).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from django.conf import settings
from django.db import connection, transaction

from ..models import StoredDelta
from ..partitioning import partition_name
from .compact import STORED_COLUMNS
from .schema import DELTAS

TABLE = "orderbook_delta_packs"
LOOSE_VIEW = "orderbook_deltas_loose"  # orderbook_deltas' loose rows
PACKED_VIEW = "orderbook_deltas_packed"  # its unpacked chunks, with pack_first_at, pack_last_at
SPAN = timedelta(hours=1)
MAX_DELTAS = 256
# Markets packed per statement (and transaction): pack_day().
PACK_MARKETS = 1000
# The stored columns a chunk keeps as arrays (all but the market's id).
ARRAYS = tuple(c for c in STORED_COLUMNS if c != "market_id")
CHUNK_ORDER = "pack_first_at"  # sorts unpacked rows chunk by chunk, in replay order


def range_sql(lo: str | None, hi: str | None, alias: str = "", prefix: str = "pack_") -> str:
    """The condition on PACKED_VIEW's chunks that may hold a delta in [lo, hi].

    `lo` and `hi` are SQL expressions (placeholders) of receive times, None
    for no bound. `prefix` "" is the condition on TABLE's own columns.
    """
    column = f"{alias}." if alias else ""
    first, last = f"{column}{prefix}first_at", f"{column}{prefix}last_at"
    conditions = []
    if lo is not None:
        conditions += [f"{first} > {lo}::timestamptz - interval '{_seconds(SPAN)} seconds'",
                       f"{last} >= {lo}"]
    if hi is not None:
        conditions.append(f"{first} <= {hi}")
    return " AND ".join(conditions) or "TRUE"


def range_params(lo, hi) -> list:
    """The values of range_sql()'s placeholders, when `lo` and `hi` are each one (or None)."""
    return ([lo, lo] if lo is not None else []) + ([hi] if hi is not None else [])


def read_sql(mark: str, market, lo, hi, limit: int | None, descending: bool) -> tuple[str, list]:
    """(condition on PACKED_VIEW, its parameters): a read of one market's deltas in [lo, hi]
    (None: unbounded) that wants the first `limit` of them (None: all) unpacks only
    the chunks that overlap the range and can hold them.

    The chunks are counted in the index (`deltas`): past the first two
    (which may hold rows before the range), the chunks whose deltas add up
    to `limit` hold every row wanted, because chunks follow each other in
    replay order. Without this bound the unpacked rows must all be sorted
    when PostgreSQL misjudges how many rows a chunk unpacks into (it did on a
    small table: 128,000 rows unpacked and sorted for a 1000-row page).
    """
    condition = range_sql(None if lo is None else mark, None if hi is None else mark)
    params = range_params(lo, hi)
    if limit is not None:
        direction, bound, unbounded = ((" DESC", ">=", "-infinity") if descending
                                       else ("", "<=", "infinity"))
        chunks = range_sql(None if lo is None else mark, None if hi is None else mark,
                           prefix="")
        condition += (
            f" AND pack_first_at {bound} coalesce((SELECT first_at FROM (SELECT first_at, "
            f"sum(deltas) OVER (ORDER BY first_at{direction}) AS upto FROM (SELECT first_at, "
            f"deltas FROM {TABLE} WHERE market_id = {mark} AND {chunks} "
            f"ORDER BY first_at{direction} OFFSET 2) c) c WHERE upto >= {mark} "
            f"ORDER BY first_at{direction} LIMIT 1), '{unbounded}')")
        params += [market, *range_params(lo, hi), limit]
    return condition, params


def may_be_packed(start: datetime) -> bool:
    """Whether deltas received at or after `start` may be in chunks: only closed days are packed."""
    return start < datetime.combine(datetime.now(timezone.utc).date(), time(), timezone.utc)


def day_source(start: str, end: str) -> str:
    """`orderbook_deltas` for a read of every market over [start, end) (SQL expressions,
    each used once per branch), as a FROM item.

    The view alone would unpack every chunk in PostgreSQL to find a day's
    (the lake's archive and `export` read whole days): here only the chunks
    that overlap the range are unpacked. The caller still bounds `received_at`.
    """
    columns = ", ".join(DELTAS.columns + ("market_id",))
    return (f"(SELECT {columns} FROM {LOOSE_VIEW} UNION ALL SELECT {columns} FROM {PACKED_VIEW} "
            f"WHERE pack_first_at >= {start}::timestamptz - interval '{_seconds(SPAN)} seconds' "
            f"AND pack_first_at < {end}) AS {DELTAS.db_table}")


def bounds_sql(market_sql: str) -> str:
    """Two SQL subqueries: the first and last receive time of a market's chunks.

    `market_sql` is a condition on `market_id`. Chunks never overlap, so the
    last one by `first_at` ends last: both are one probe of the index.
    """
    return (f"(SELECT first_at FROM {TABLE} WHERE {market_sql} ORDER BY first_at LIMIT 1), "
            f"(SELECT last_at FROM {TABLE} WHERE {market_sql} ORDER BY first_at DESC LIMIT 1)")


def contains_sql(market_id: str, received_at: str, session_id: str,
                 within: tuple[str, str]) -> str:
    """SQL true when a chunk holds the delta with that key (SQL expressions).

    `within` (SQL of receive times) bounds every delta asked about: for a
    whole batch PostgreSQL anti-joins the chunks, and would otherwise unpack
    every chunk it holds (measured: all 785 of a small table for 20,000
    staged rows, 445 ms).
    """
    return (f"EXISTS (SELECT 1 FROM {PACKED_VIEW} k WHERE k.market_id = {market_id} AND "
            f"{range_sql(received_at, received_at, 'k')} AND {range_sql(*within, 'k')} AND "
            f"k.received_at = {received_at} AND k.session_id = {session_id})")


def lock_rewrites(cursor) -> None:
    """Serialize this transaction's deletes and loads of deltas with other
    rewrites and with packing (re-ingest: collector/reingest.py).

    A delete takes the chunks' table in ROW EXCLUSIVE mode and a load then
    asks for SHARE (compact.insert_sql): two transactions doing both would
    each wait for the other's delete (measured: PostgreSQL aborted one with a
    deadlock). This self-conflicting mode, taken first, makes the second wait
    for the first to commit; loads that only load (journal replays) still go
    on beside each other.
    """
    cursor.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")


def _seconds(span: timedelta) -> int:
    return int(span.total_seconds())


def pack_day(day: date) -> int:
    """Move the loose deltas of `day` into chunks; the chunks written.

    The markets that have loose deltas that day are repacked whole (their
    chunks of the day unpacked and cut again with the loose deltas), so a
    late delta never leaves two chunks of a market overlapping. Rows that a
    writer commits meanwhile stay loose until the next run.

    PACK_MARKETS markets at a time, each batch one statement in a
    transaction of its own: a full-exchange day (191.5M deltas) in one
    statement would sort the whole day on disk in a transaction of about 13
    minutes, and every idempotent load of deltas (a journal replay) waits
    for the packing it might race (compact.insert_sql).
    """
    partition = partition_name(StoredDelta, day)
    _create_partition(day)
    with connection.cursor() as cursor:
        # The day's markets, one probe of the key's index each (a loose index scan).
        cursor.execute(f"""
            WITH RECURSIVE m AS (
                SELECT min(market_id) AS id FROM {partition}
                UNION ALL
                SELECT (SELECT min(market_id) FROM {partition} WHERE market_id > m.id)
                FROM m WHERE m.id IS NOT NULL)
            SELECT id FROM m WHERE id IS NOT NULL""")
        markets = [row[0] for row in cursor.fetchall()]
    start = datetime.combine(day, time(), timezone.utc)
    sql = _pack_sql(partition)
    chunks = 0
    for i in range(0, len(markets), PACK_MARKETS):
        batch = markets[i:i + PACK_MARKETS]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, {"start": start, "end": start + timedelta(days=1),
                                 "first": batch[0], "last": batch[-1]})
            chunks += cursor.rowcount
    return chunks


def _pack_sql(partition: str) -> str:
    """The statement that packs the loose deltas of markets %(first)s to %(last)s."""
    order = DELTAS.order_sql()
    columns = ", ".join(STORED_COLUMNS)
    arrays = ", ".join(ARRAYS)
    return f"""
    WITH loose AS (
        DELETE FROM {partition} WHERE market_id BETWEEN %(first)s AND %(last)s
        RETURNING {columns}
    ), markets AS (
        SELECT DISTINCT market_id FROM loose
    ), unpacked AS (
        DELETE FROM {TABLE} p USING markets
        WHERE p.market_id = markets.market_id AND p.first_at >= %(start)s AND p.first_at < %(end)s
        RETURNING p.*
    ), day AS (
        SELECT {columns} FROM loose
        UNION ALL
        SELECT {', '.join('u.' + c if c != 'market_id' else 'p.market_id' for c in STORED_COLUMNS)}
        FROM unpacked p CROSS JOIN LATERAL unnest({', '.join('p.' + c for c in ARRAYS)})
            AS u({arrays})
    ), cut AS (
        SELECT *, (row_number() OVER (PARTITION BY market_id, stretch ORDER BY {order}) - 1)
                  / {MAX_DELTAS} AS chunk
        FROM (SELECT *, floor(extract(epoch FROM received_at) / {_seconds(SPAN)}) AS stretch
              FROM day) d
    )
    INSERT INTO {TABLE} (first_at, last_at, market_id, deltas, {arrays})
    SELECT min(received_at), max(received_at), market_id, count(*),
           {', '.join(f'array_agg({c} ORDER BY {order})' for c in ARRAYS)}
    FROM cut GROUP BY market_id, stretch, chunk
    """


def _create_partition(day: date) -> None:
    """Create the chunks' partition of `day` unless it exists.

    Made apart and then attached: ATTACH takes a lock on the chunks' table
    that readers and inserts go on under, where CREATE TABLE ... PARTITION
    OF would stop them all (docs/storage.md, "Locks").
    """
    name = partition_name(TABLE, day)
    start = datetime.combine(day, time(), timezone.utc)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)",
                       [settings.PARTITION_LOCK_TIMEOUT])
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is not None:
            return
        cursor.execute(f"CREATE TABLE {name} (LIKE {TABLE})")
        cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES "
                       f"FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')")


def has_loose_deltas(day: date) -> bool:
    """Whether `day`'s partition of deltas holds loose rows (not packed yet, or late)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {partition_name(StoredDelta, day)})")
        return cursor.fetchone()[0]


def day_count(cursor, day: date) -> int:
    """How many deltas the chunks of `day` hold."""
    start = datetime.combine(day, time(), timezone.utc)
    cursor.execute(f"SELECT coalesce(sum(deltas), 0) FROM {TABLE} "
                   "WHERE first_at >= %s AND first_at < %s", [start, start + timedelta(days=1)])
    return int(cursor.fetchone()[0])


def drop_day(cursor, day: date) -> None:
    """Drop the chunks of `day` with their partition (the day's partition of
    deltas is being dropped: markets/record/lake.py)."""
    cursor.execute(f"DROP TABLE IF EXISTS {partition_name(TABLE, day)}")
