"""Bytes per order-book delta in PostgreSQL for candidate row layouts (not a test).

    DEBUG=1 .venv/bin/python bench/row_layout_bench.py [--markets 5000] [--deltas 1900000]

Issue 9 asks for the row layout to be chosen by measurement. This loads the
deltas of bench/storage_bench.py's full-exchange-like mix (Zipf activity over
5,000 markets, two hours) into one scratch table per layout, in receive order
as the collector writes them, and prints heap and index bytes per delta, then
the index again after REINDEX (what a closed day's partition could be packed
to). The tables live in a scratch schema of the development database, dropped
at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DEBUG", "1")

from bench import storage_bench  # noqa: E402  (sets Django up)
from django.db import connection  # noqa: E402

SCHEMA = "row_layout_bench"


def _side(row) -> int:
    return 0 if row.side == "yes" else 1


def _price(row) -> int:  # 1/10,000 dollar
    return int(row.price.replace(".", ""))


def _delta(row) -> int:  # 1/100 contract
    whole, _, cents = row.delta.partition(".")
    return int(whole + (cents + "00")[:2])


class Delta:
    __slots__ = ("ticker", "market_id", "received_us", "sid", "seq", "side", "price", "delta", "ts_us")

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)


SESSION_US = 1_764_000_000_000_000  # the session's id today: its connect time in µs
SESSION_NO = 1  # ... or its number in a table of sessions

# name: (columns, primary key, one COPY line per delta)
LAYOUTS = {
    "today: text ticker, NUMERIC, text side, 5-column key": (
        "market_ticker text, received_at timestamptz, session_id int8, sid int4, seq int8, "
        "side text, price numeric(10,4), delta numeric(18,2), ts timestamptz",
        "market_ticker, received_at, session_id, sid, seq",
        lambda r: f"{r.ticker}\t{_iso(r.received_us)}\t{SESSION_US}\t{r.sid}\t{r.seq}\t"
                  f"{r.side}\t{r.price}\t{r.delta}\t{_iso(r.ts_us)}\n",
    ),
    "market id, fixed-point ints, same key": (
        "market_id int4, received_at timestamptz, session_id int8, sid int4, seq int8, "
        "side int2, price int4, delta int8, ts timestamptz",
        "market_id, received_at, session_id, sid, seq",
        lambda r: f"{r.market_id}\t{_iso(r.received_us)}\t{SESSION_US}\t{r.sid}\t{r.seq}\t"
                  f"{_side(r)}\t{_price(r)}\t{_delta(r)}\t{_iso(r.ts_us)}\n",
    ),
    "+ 8-byte columns first, int2 price, int4 session, ts as int4 lag": (
        "received_at timestamptz, seq int8, delta int8, market_id int4, session_no int4, "
        "sid int4, ts_lag_us int4, price int2, side int2",
        "market_id, received_at, session_no, sid, seq",
        lambda r: f"{_iso(r.received_us)}\t{r.seq}\t{_delta(r)}\t{r.market_id}\t{SESSION_NO}\t"
                  f"{r.sid}\t{r.received_us - r.ts_us}\t{_price(r)}\t{_side(r)}\n",
    ),
    "+ key (market_id, received_at, session_no)": (
        "received_at timestamptz, seq int8, delta int8, market_id int4, session_no int4, "
        "sid int4, ts_lag_us int4, price int2, side int2",
        "market_id, received_at, session_no",
        lambda r: f"{_iso(r.received_us)}\t{r.seq}\t{_delta(r)}\t{r.market_id}\t{SESSION_NO}\t"
                  f"{r.sid}\t{r.received_us - r.ts_us}\t{_price(r)}\t{_side(r)}\n",
    ),
    "+ key (market_id, received_at)": (
        "received_at timestamptz, seq int8, delta int8, market_id int4, session_no int4, "
        "sid int4, ts_lag_us int4, price int2, side int2",
        "market_id, received_at",
        lambda r: f"{_iso(r.received_us)}\t{r.seq}\t{_delta(r)}\t{r.market_id}\t{SESSION_NO}\t"
                  f"{r.sid}\t{r.received_us - r.ts_us}\t{_price(r)}\t{_side(r)}\n",
    ),
}

# One row per market per writer flush (0.5 s): the deltas packed in a bytea.
PACKED = struct.Struct("<iqqhbi")  # µs after the row's start, seq, delta, price, side, ts lag
FLUSH_US = 500_000


def _iso(us: int) -> str:
    seconds, micros = divmod(us, 1_000_000)
    return f"{seconds}.{micros:06d}"  # COPY into timestamptz goes through to_timestamp below


def load_mix(args) -> list[Delta]:
    tmp = Path(tempfile.mkdtemp(prefix="row-layout-"))
    mix_args = argparse.Namespace(markets=args.markets, deltas=args.deltas, hours=2.0,
                                  zipf=1.1, trade_share=0.0, seed=1)
    mix = storage_bench.generate(tmp / "stream.tsv", mix_args)
    ids = {ticker: i for i, ticker in enumerate(mix["tickers"])}
    rows = []
    import orjson
    for at, raw in storage_bench.read_frames(tmp / "stream.tsv"):
        frame = orjson.loads(raw)
        if frame.get("type") != "orderbook_delta":
            continue
        msg = frame["msg"]
        rows.append(Delta(msg["market_ticker"], ids[msg["market_ticker"]],
                          int(at.timestamp() * 1e6), frame["sid"], frame["seq"], msg["side"],
                          msg["price_dollars"], msg["delta_fp"], msg["ts_ms"] * 1000))
    (tmp / "stream.tsv").unlink()
    return rows


def measure(cursor, table: str, rows: int) -> tuple[float, float, float]:
    cursor.execute(f"VACUUM ANALYZE {table}")
    cursor.execute(f"SELECT pg_table_size('{table}'), pg_indexes_size('{table}')")
    heap, index = cursor.fetchone()
    cursor.execute(f"REINDEX TABLE {table}")
    cursor.execute(f"SELECT pg_indexes_size('{table}')")
    packed = cursor.fetchone()[0]
    return heap / rows, index / rows, packed / rows


def copy_lines(cursor, table: str, columns: str, lines) -> None:
    """COPY text lines; timestamps arrive as epoch seconds and are converted in a staging step."""
    names = [part.split()[0] for part in re.split(r",\s*(?=[a-z_]+\s)", columns)]
    staged = ", ".join(
        f"{name} text" if "timestamptz" in part else part
        for name, part in zip(names, re.split(r",\s*(?=[a-z_]+\s)", columns)))
    cursor.execute(f"CREATE TEMP TABLE staging ({staged})")
    with cursor.cursor.copy("COPY staging FROM STDIN") as copy:
        buffer = io.StringIO()
        for line in lines:
            buffer.write(line)
            if buffer.tell() > 1 << 20:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    select = ", ".join(
        f"to_timestamp({name}::numeric)" if "timestamptz" in part else name
        for name, part in zip(names, re.split(r",\s*(?=[a-z_]+\s)", columns)))
    # In receive order, as the collector inserts them.
    cursor.execute(f"INSERT INTO {table} SELECT {select} FROM staging")
    cursor.execute("DROP TABLE staging")


def packed_rows(rows: list[Delta]):
    """Group each market's deltas by writer flush; yield COPY lines of (market, start, session, bytea)."""
    open_rows: dict[int, tuple[int, list]] = {}
    for row in rows:
        window = row.received_us // FLUSH_US
        current = open_rows.get(row.market_id)
        if current is not None and current[0] != window:
            yield _packed_line(row.market_id, current[1])
            current = None
        if current is None:
            current = open_rows[row.market_id] = (window, [])
        current[1].append(row)
    for market_id, (_, group) in open_rows.items():
        yield _packed_line(market_id, group)


def _packed_line(market_id: int, group: list[Delta]) -> str:
    start = group[0].received_us
    blob = b"".join(PACKED.pack(r.received_us - start, r.seq, _delta(r), _price(r), _side(r),
                                r.received_us - r.ts_us) for r in group)
    return f"{market_id}\t{_iso(start)}\t{SESSION_NO}\t{len(group)}\t\\\\x{blob.hex()}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=5000)
    parser.add_argument("--deltas", type=int, default=1_900_000)
    args = parser.parse_args()
    rows = load_mix(args)
    rows.sort(key=lambda r: r.received_us)
    n = len(rows)
    print(f"{n:,} deltas over {args.markets:,} markets (storage_bench's mix), in receive order")
    print(f"{'layout':<66} {'heap':>6} {'index':>6} {'total':>6}  index after REINDEX")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
        try:
            for number, (name, (columns, key, line)) in enumerate(LAYOUTS.items()):
                table = f"{SCHEMA}.layout_{number}"
                cursor.execute(f"CREATE TABLE {table} ({columns}, PRIMARY KEY ({key}))")
                copy_lines(cursor, table, columns, (line(r) for r in rows))
                heap, index, packed = measure(cursor, table, n)
                print(f"{name:<66} {heap:6.1f} {index:6.1f} {heap + index:6.1f}  {packed:6.1f}",
                      flush=True)
            table = f"{SCHEMA}.packed"
            columns = "market_id int4, first_received_at timestamptz, session_no int4, n int4, deltas bytea"
            cursor.execute(f"CREATE TABLE {table} ({columns}, "
                           "PRIMARY KEY (market_id, first_received_at, session_no))")
            copy_lines(cursor, table, columns, packed_rows(rows))
            cursor.execute(f"SELECT count(*) FROM {table}")
            groups = cursor.fetchone()[0]
            heap, index, packed = measure(cursor, table, n)
            print(f"{'one row per market per 0.5 s flush, deltas packed in bytea':<66} "
                  f"{heap:6.1f} {index:6.1f} {heap + index:6.1f}  {packed:6.1f}  "
                  f"({n / groups:.1f} deltas a row)")
        finally:
            cursor.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
