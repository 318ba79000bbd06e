"""How deltas are stored: the one place that turns a delta row into its compact form.

A full exchange day is about 191.5M deltas, so bytes per delta decide how many
days PostgreSQL can hold (docs/storage.md). A delta row as the record speaks
it (DELTAS.columns: the ticker, exact decimals, the side's name) is kept in
`orderbook_delta_rows` (StoredDelta) as the market's RecordMarket id, the
price in 1/10,000 dollar and the size change in 1/100 contract (integers, so
exact), and the side as 1 or 2. Readers never see this: the view
`orderbook_deltas` (migration 0007) converts back. Writers come here:

* `stored_rows()` for the collector's binary COPY (markets/ingest.py,
  deltas_append), converting in Python;
* `insert_sql()` for every set-based load of any record table (idempotent
  ingest, re-ingest, the lake's fold), converting deltas in SQL from a
  relation with the record's columns.

Both give the same integers, at the model fields' scales (PRICE_PLACES,
COUNT_PLACES): Python refuses a value finer than its scale; the SQL reads
columns of the record's own types, numeric(10,4) and numeric(18,2), whose
values are whole units already.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterable, Sequence

import orjson
from django.db import DataError, connection

from ..fixedpoint import COUNT_QUANTUM, PRICE_QUANTUM
from ..models import DeltaSide, StoredDelta
from .schema import DELTAS, RecordTable

STORED_TABLE = StoredDelta._meta.db_table
# The model says the columns, in the order that leaves no padding, and their types.
STORED_COLUMNS = tuple(f.column for f in StoredDelta._meta.concrete_fields)
STORED_TYPES = tuple(f.db_type(connection) for f in StoredDelta._meta.concrete_fields)
STORED_KEY = StoredDelta._meta.pk.field_names  # market_id, received_at, session_id
SIDES = {"yes": DeltaSide.YES.value, "no": DeltaSide.NO.value}
PRICE_UNITS = int(1 / PRICE_QUANTUM)  # 10,000 a dollar
COUNT_UNITS = int(1 / COUNT_QUANTUM)  # 100 a contract

# Where each stored column comes from, as SQL over a relation `s` with the
# record's columns joined to `m` (record_markets).
_FROM_RECORD = {
    "received_at": "s.received_at",
    "session_id": "s.session_id",
    "seq": "s.seq",
    "delta": f"(s.delta * {COUNT_UNITS})::bigint",
    "ts": "s.ts",
    "market_id": "m.id",
    "sid": "s.sid",
    "price": f"(s.price * {PRICE_UNITS})::integer",
    "side": f"CASE s.side WHEN 'yes' THEN {SIDES['yes']} WHEN 'no' THEN {SIDES['no']} END",
}


def market_ids(cursor, tickers: Iterable[str]) -> dict[str, int]:
    """The RecordMarket id of each ticker, giving new tickers theirs (one round trip).

    Not cached between calls: an id handed out in a transaction that rolls
    back is gone again, and a cached one would file rows under no market.
    """
    # The tickers as one JSON text rather than a text[]: psycopg quotes an
    # array element by element in Python (measured: 0.9 us a ticker, against
    # 0.1 us as JSON; a batch names up to a few thousand markets).
    cursor.execute(
        "WITH wanted AS (SELECT DISTINCT json_array_elements_text(%s::json) AS ticker), "
        "added AS (INSERT INTO record_markets (ticker) SELECT ticker FROM wanted "
        "ORDER BY ticker ON CONFLICT DO NOTHING RETURNING ticker, id) "
        "SELECT ticker, id FROM added UNION ALL "
        "SELECT r.ticker, r.id FROM record_markets r JOIN wanted USING (ticker)",
        [orjson.dumps(list(tickers)).decode()])
    return dict(cursor.fetchall())


def market_id(ticker: str) -> int:
    """The market's id for reading its deltas: 0 (no market's) when none was stored.

    Readers filter the view on `market_id = <this literal>`, not on the
    ticker: through the view's join, or with the id left to a subquery,
    PostgreSQL cannot tell how many rows the market has, nor read them in
    key order, and sorted a hot market's whole day for a 1,000-row page
    (measured: 754 ms; with the literal id, 2.8 ms). Not cached: a test's
    rolled-back transaction would leave a cached id naming nothing.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM record_markets WHERE ticker = %s", [ticker])
        found = cursor.fetchone()
    return found[0] if found else 0


def market_column(record: RecordTable, ticker: str) -> tuple[str, object]:
    """(column, value): how a read of `record` in PostgreSQL picks one market's rows."""
    if record.stored is None:
        return "market_ticker", ticker
    return "market_id", market_id(ticker)


# The market of a correlated ticker (SQL `{}`), for queries that take one
# row per market (LIMIT 1): there the subquery's plan is fine.
MARKET_OF_TICKER_SQL = "market_id = (SELECT id FROM record_markets WHERE ticker = {})"


def stored_rows(rows: Sequence[tuple], ids: dict[str, int]) -> list[tuple]:
    """Delta rows (DELTAS.columns) as StoredDelta rows (STORED_COLUMNS), for COPY.

    Raises DataError, as PostgreSQL does for a NUMERIC that does not fit, for
    a value that is finer than its scale or does not fit its integer: psycopg's
    binary dumpers would silently wrap it (measured: a price of $10,000,000
    came back as $121,575.2192).
    """
    market, at, session, sid, seq, side, price, delta, ts = (
        DELTAS.index(c) for c in ("market_ticker", "received_at", "session_id", "sid", "seq",
                                  "side", "price", "delta", "ts"))
    prices, deltas = _price_units, _delta_units
    for cache in (prices, deltas):
        if len(cache) >= _UNITS_CACHE_LIMIT:
            cache.clear()
    out = []
    append = out.append
    for row in rows:
        value = row[price]
        price_units = prices.get(value)
        if price_units is None:
            price_units = prices[value] = _units("price", value, PRICE_UNITS, INT4)
        value = row[delta]
        delta_units = deltas.get(value)
        if delta_units is None:
            delta_units = deltas[value] = _units("delta", value, COUNT_UNITS, INT8)
        append((row[at], row[session], row[seq], delta_units, row[ts], ids[row[market]],
                row[sid], price_units, SIDES[row[side]]))
    return out


INT4, INT8 = 2**31, 2**63
# Each value's units, by value (equal Decimals give equal units): the same few
# thousand prices and sizes repeat all day, and a lookup costs far less than
# the Decimal arithmetic and checks of _units (measured on ingest_bench:
# stored_rows 1.5 -> 0.6 us a delta). Only values that fit are kept; bounded.
_UNITS_CACHE_LIMIT = 100_000
_price_units: dict[Decimal, int] = {}
_delta_units: dict[Decimal, int] = {}


def _units(column: str, value: Decimal, units: int, bound: int) -> int:
    scaled = value * units
    whole = int(scaled)
    if whole != scaled:
        raise DataError(f"numeric value finer than 1/{units} for {column}: {value}")
    if not -bound <= whole < bound:
        raise DataError(f"numeric value out of range for {column}: {value}")
    return whole


def insert_sql(record: RecordTable, source: str, where: str = "", returning: str = "") -> list[str]:
    """Statements that store the rows of relation `source` (with `record`'s
    columns) that are not stored yet (ON CONFLICT DO NOTHING); the last one's
    row count is the number stored, and it RETURNs `returning` (columns of
    the record). `where` filters `s`. Deltas are converted to their stored
    form here, their new tickers given ids first; other tables take the rows
    as they are."""
    tail = f" RETURNING {returning}" if returning else ""
    columns = ", ".join(record.columns)
    if record.stored is None:
        condition = f"WHERE {where}" if where else ""
        return [f"INSERT INTO {record.stored_table} ({columns}) SELECT {columns} "
                f"FROM {source} s {condition} ON CONFLICT DO NOTHING{tail}"]
    assert record is DELTAS and not returning
    from . import packs  # packs builds on this module

    # ON CONFLICT sees the loose rows; a delta of a packed day may be in a chunk.
    unpacked = "NOT " + packs.contains_sql(
        "m.id", "s.received_at", "s.session_id",
        within=(f"(SELECT min(received_at) FROM {source})",
                f"(SELECT max(received_at) FROM {source})"))
    return [
        # A statement of its own, before the INSERT takes its snapshot: a
        # packing in progress (packs.pack_day) is waited for and then seen,
        # or this statement's snapshot would miss its chunks while ON CONFLICT
        # waited for its deletes, and store those deltas a second time.
        # SHARE: loads do not wait for each other.
        f"LOCK TABLE {packs.TABLE} IN SHARE MODE",
        f"INSERT INTO record_markets (ticker) SELECT DISTINCT market_ticker FROM {source} "
        "ORDER BY 1 ON CONFLICT DO NOTHING",
        f"INSERT INTO {STORED_TABLE} ({', '.join(STORED_COLUMNS)}) "
        f"SELECT {', '.join(_FROM_RECORD[c] for c in STORED_COLUMNS)} FROM {source} s "
        f"JOIN record_markets m ON m.ticker = s.market_ticker "
        f"WHERE {' AND '.join(filter(None, (where, unpacked)))} ON CONFLICT DO NOTHING",
    ]


def delete_sql(record: RecordTable, where: str, returning: str = "",
               within: tuple[str, str] | None = None) -> str:
    """A DELETE of `record`'s rows that match `where` (SQL on `t`, the rows as
    readers see them), RETURNING `returning` (columns of `t`).

    For deltas `where` is written four times: give its parameters by name
    (%(name)s); and `within`, SQL of the receive times [lo, hi] that bound
    the rows `where` matches, so that only the chunks that overlap them are
    read. A chunk (markets/record/packs.py) that holds a matching delta is
    unpacked: its other deltas become loose rows again (the next packing of
    the day packs them), in the same statement. Its row count is the number
    of deltas deleted, loose or packed (one row each, of one column).
    """
    tail = f" RETURNING {returning}" if returning else ""
    if record.stored is None:
        return f"DELETE FROM {record.stored_table} t WHERE {where}{tail}"
    assert record is DELTAS and not returning and within is not None
    from . import packs  # packs builds on this module

    key = ", ".join(STORED_KEY)
    chunk = ("p.market_id = t.market_id AND p.first_at = t.pack_first_at "
             "AND p.last_at = t.pack_last_at")
    chunks = packs.range_sql(*within, alias="t")  # on the chunks of the rows `where` may match
    # The same range on the chunks' table itself: PostgreSQL skips the other days' partitions.
    return (f"WITH unpacked AS (DELETE FROM {packs.TABLE} p WHERE "
            f"{packs.range_sql(*within, alias='p', prefix='')} AND EXISTS "
            f"(SELECT 1 FROM {packs.PACKED_VIEW} t WHERE {chunk} AND {chunks} AND ({where})) "
            f"RETURNING p.market_id, p.first_at, p.last_at), "
            f"kept AS (INSERT INTO {STORED_TABLE} ({', '.join(STORED_COLUMNS)}) "
            f"SELECT {', '.join(_FROM_RECORD[c] for c in STORED_COLUMNS)} FROM "
            f"(SELECT t.* FROM {packs.PACKED_VIEW} t JOIN unpacked p ON {chunk} "
            f"WHERE {chunks} AND ({where}) IS NOT TRUE) s "
            f"JOIN record_markets m ON m.id = s.market_id), "
            f"loose AS (DELETE FROM {STORED_TABLE} WHERE ({key}) IN "
            f"(SELECT {', '.join('t.' + c for c in STORED_KEY)} FROM {packs.LOOSE_VIEW} t "
            f"WHERE {where}) RETURNING 1) "
            f"SELECT 1 FROM loose UNION ALL "
            f"SELECT 1 FROM {packs.PACKED_VIEW} t JOIN unpacked p ON {chunk} "
            f"WHERE {chunks} AND ({where})")
