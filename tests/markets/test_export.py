"""Day files: exact round trips in Parquet and CSV, DuckDB reads them, the command."""

import csv
import gzip
import io
import json
import random
import re
from datetime import date, timedelta
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from markets.export import TABLE_NAMES, dataset_file, dataset_files, export_dataset, file_path
from markets.models import Settlement
from tests.recorded import EVENT, HOT, OTHER, QUIET, record_day

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 18)
DELTA_SQL = (
    "SELECT market_ticker, received_at, session_id, sid, seq, side, price, delta, ts "
    "FROM orderbook_deltas WHERE received_at >= %s AND received_at < %s {where} "
    "ORDER BY market_ticker, received_at, session_id, seq, sid"
)


def _stored(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _bounds(day):
    from markets.export import _midnight

    return [_midnight(day), _midnight(day) + timedelta(days=1)]


@pytest.fixture
def record():
    rec = record_day(DAY)
    Settlement.objects.create(market_ticker=HOT, event_ticker=EVENT, result="yes",
                              settlement_value=Decimal("1.0000"), settled_at=rec.last)
    return rec


def test_parquet_round_trips_exactly_with_decimal_and_utc_types(record, tmp_path):
    export_dataset(start_date=DAY, end_date=DAY, out_dir=tmp_path)
    table = pq.read_table(file_path(tmp_path, "deltas", DAY, "parquet"))
    assert str(table.schema.field("price").type) == "decimal128(10, 4)"
    assert str(table.schema.field("delta").type) == "decimal128(18, 2)"
    assert str(table.schema.field("received_at").type) == "timestamp[us, tz=UTC]"
    stored = _stored(DELTA_SQL.format(where=""), _bounds(DAY))
    assert len(stored) == record.deltas
    assert [tuple(r.values()) for r in table.to_pylist()] == [tuple(r) for r in stored]


def test_trades_snapshots_lifecycle_gaps_settlements_round_trip(record, tmp_path):
    export_dataset(start_date=DAY, end_date=DAY, out_dir=tmp_path)
    read = lambda name: pq.read_table(file_path(tmp_path, name, DAY, "parquet")).to_pylist()
    trades = read("trades")
    stored = _stored("SELECT trade_id, yes_price, count, ts, received_at, taker_side FROM trades"
                     " WHERE ts >= %s AND ts < %s ORDER BY market_ticker, received_at, ts,"
                     " trade_id", _bounds(DAY))
    assert [(t["trade_id"], t["yes_price"], t["count"], t["ts"], t["received_at"],
             t["taker_side"]) for t in trades] == [tuple(r) for r in stored]
    snapshots = read("snapshots")
    assert len(snapshots) == record.snapshots
    first = _stored("SELECT yes_levels, no_levels FROM orderbook_snapshots WHERE market_ticker"
                    " = %s ORDER BY received_at LIMIT 1", [snapshots[0]["market_ticker"]])[0]
    levels = lambda v: json.loads(v) if isinstance(v, str) else v
    assert [[f"{l['price']}", f"{l['size']}"] for l in snapshots[0]["no_levels"]] == \
        levels(first[1])
    lifecycle = read("lifecycle")
    assert {row["event_type"] for row in lifecycle} >= {"metadata_updated", "event_lifecycle"}
    market_message = next(r for r in lifecycle if r["market_ticker"])
    assert "\n" in json.loads(market_message["payload"])["yes_sub_title"]
    gaps = read("gaps")
    assert len(gaps) == 4 and gaps[0]["tickers_on_sid"] in ([], [HOT, QUIET, OTHER])
    assert read("settlements")[0]["settlement_value"] == Decimal("1.0000")


def test_csv_round_trips_exactly(record, tmp_path):
    export_dataset(start_date=DAY, end_date=DAY, out_dir=tmp_path, fmt="csv",
                   tables=["deltas", "trades"])
    with gzip.open(file_path(tmp_path, "deltas", DAY, "csv"), "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    stored = _stored(DELTA_SQL.format(where="").replace(
        "price, delta", "price::text, delta::text"), _bounds(DAY))
    from markets.replay_stream import iso_utc

    assert [(r["market_ticker"], r["received_at"], int(r["session_id"]), int(r["sid"]),
             int(r["seq"]), r["side"], r["price"], r["delta"], r["ts"] or None) for r in rows] \
        == [(s[0], iso_utc(s[1]), s[2], s[3], s[4], s[5], s[6], s[7], iso_utc(s[8]))
            for s in stored]
    with gzip.open(file_path(tmp_path, "trades", DAY, "csv"), "rt", newline="") as f:
        trades = list(csv.DictReader(f))
    assert len(trades) == record.trades
    assert trades[0]["taker_side"] == ""  # NULL is an empty field
    assert trades[0]["is_block_trade"] == "false"


def test_duckdb_reads_the_dataset_and_its_counts_match_the_database(record, tmp_path):
    export_dataset(start_date=DAY - timedelta(days=1), end_date=DAY, out_dir=tmp_path)
    con = duckdb.connect()
    counts = dict(con.execute(
        f"SELECT market_ticker, count(*) FROM read_parquet('{tmp_path}/type=deltas/*/*.parquet',"
        " hive_partitioning = true) WHERE date = DATE '2026-11-18' GROUP BY 1").fetchall())
    stored = dict(_stored("SELECT market_ticker, count(*) FROM orderbook_deltas WHERE "
                          "received_at >= %s AND received_at < %s GROUP BY 1", _bounds(DAY)))
    assert counts == stored and sum(counts.values()) == record.deltas
    total, volume = con.execute(
        f"SELECT count(*), sum(count) FROM '{tmp_path}/type=trades/*/*.parquet'").fetchone()
    assert total == record.trades
    assert volume == _stored("SELECT sum(count) FROM trades", [])[0][0]
    empty = con.execute(f"SELECT count(*) FROM '{tmp_path}/type=deltas/date=2026-11-17/*.parquet'"
                        ).fetchone()[0]
    assert empty == 0


def test_a_market_filter_exports_only_those_markets(record, tmp_path):
    export_dataset(start_date=DAY, end_date=DAY, out_dir=tmp_path, tickers=[QUIET],
                   tables=["deltas", "lifecycle", "gaps"])
    deltas = pq.read_table(file_path(tmp_path, "deltas", DAY, "parquet"))
    assert set(deltas.column("market_ticker").to_pylist()) == {QUIET}
    lifecycle = pq.read_table(file_path(tmp_path, "lifecycle", DAY, "parquet")).to_pylist()
    assert {r["market_ticker"] for r in lifecycle} == {QUIET, ""}  # its event's messages too


def test_the_command_writes_the_hive_layout(record, tmp_path):
    out = io.StringIO()
    call_command("export", "--start-date", DAY.isoformat(), "--end-date", DAY.isoformat(),
                 "--series", "KXTEST", "--format", "parquet", "--out", str(tmp_path),
                 stdout=out, stderr=io.StringIO())
    assert f"wrote {len(TABLE_NAMES)} files" in out.getvalue()
    listed = dataset_files(tmp_path)
    assert [f.path for f in listed] == sorted(
        f"type={t}/date={DAY}/part-0.parquet" for t in TABLE_NAMES)
    deltas = pq.read_table(file_path(tmp_path, "deltas", DAY, "parquet"))
    assert OTHER not in set(deltas.column("market_ticker").to_pylist())
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.parametrize("args, message", [
    (["--start-date", "2026-11-18", "--end-date", "2026-11-17"], "before"),
    (["--start-date", "18/11/2026", "--end-date", "2026-11-17"], "not a date"),
    (["--start-date", "2026-11-18", "--end-date", "2026-11-18", "--types", "nope"], "nope"),
    (["--start-date", "2026-11-18", "--end-date", "2026-11-18", "--series", "NOPE"], "NOPE"),
])
def test_the_command_refuses_bad_arguments(args, message, tmp_path):
    with pytest.raises(CommandError, match=message):
        call_command("export", *args, "--out", str(tmp_path), stderr=io.StringIO())


def test_only_files_the_exporter_writes_can_be_resolved(tmp_path):
    good = tmp_path / "type=deltas" / "date=2026-11-18" / "part-0.parquet"
    good.parent.mkdir(parents=True)
    good.write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    assert dataset_file(tmp_path, "type=deltas/date=2026-11-18/part-0.parquet") == good
    for bad in ("secret.txt", "../secret.txt", "type=deltas/date=2026-11-18/../../secret.txt",
                "/etc/passwd", "type=deltas/date=2026-11-19/part-0.parquet", ""):
        assert dataset_file(tmp_path, bad) is None


def _delta_rows(n, deltas, ts=None):
    """n delta rows of one market in the deltas' Parquet schema, `deltas` cycled."""
    from datetime import datetime, timezone

    from markets.export import TABLES, schema

    start = datetime(2026, 11, 18, tzinfo=timezone.utc)
    return pa.table({
        "market_ticker": ["M"] * n,
        "received_at": [start + timedelta(microseconds=1000 * i) for i in range(n)],
        "session_id": [1] * n, "sid": [1] * n, "seq": list(range(n)), "side": ["yes"] * n,
        "price": [Decimal("0.5000")] * n,
        "delta": [Decimal(deltas[i % len(deltas)]) for i in range(n)],
        "ts": ts or [None] * n,
    }, schema=schema(TABLES["deltas"]))


def _write(rows, path, chunk=37):
    from markets import export

    with export._RowGroupWriter(path, rows.schema) as writer:
        for batch in rows.to_batches(max_chunksize=chunk):
            writer.add(batch)
    return pq.ParquetFile(path)


def test_row_groups_are_whole_however_the_batches_arrive(tmp_path, monkeypatch):
    from markets import export

    monkeypatch.setattr(export, "ROW_GROUP_ROWS", 100)
    rows = _delta_rows(450, ["1.00", "-2.50"])
    path = tmp_path / "part-0.parquet"
    metadata = _write(rows, path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        100, 100, 100, 100, 50]
    assert pq.read_table(path, schema=rows.schema).equals(rows)


@pytest.mark.parametrize("at", [None, 0, 250, 449])
def test_exchange_times_are_milliseconds_unless_one_has_microseconds(tmp_path, monkeypatch,
                                                                     at):
    """Whole milliseconds (Kalshi's ts_ms; NULLs too) are stored as
    TIMESTAMP(MILLIS); one value with microseconds, in whichever row group,
    makes the whole file TIMESTAMP(MICROS). Exact either way, in whole row
    groups, with the same encodings and page index."""
    from datetime import datetime, timezone

    from markets import export

    monkeypatch.setattr(export, "ROW_GROUP_ROWS", 100)
    start = datetime(2026, 11, 18, tzinfo=timezone.utc)
    ts = [None if i % 7 == 0 else start + timedelta(milliseconds=i) for i in range(450)]
    if at is not None:
        ts[at] = start + timedelta(milliseconds=at, microseconds=1)
    rows = _delta_rows(450, ["1.00", "-2.50"], ts)
    written = _write(rows, tmp_path / "part-0.parquet")
    assert written.schema_arrow.field("ts").type == (
        export.UTC_MILLIS if at is None else export.UTC_MICROS)
    assert written.schema_arrow.field("received_at").type == export.UTC_MICROS
    metadata = written.metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        100, 100, 100, 100, 50]
    for i in range(metadata.num_row_groups):
        ts_column = metadata.row_group(i).column(rows.schema.get_field_index("ts"))
        assert "DELTA_BINARY_PACKED" in ts_column.encodings and ts_column.has_column_index
    assert pq.read_table(tmp_path / "part-0.parquet", schema=rows.schema).equals(rows)
    assert written.read().column("ts").to_pylist() == ts
    assert [p.name for p in tmp_path.iterdir()] == ["part-0.parquet"]


def test_an_empty_file_stores_exchange_times_in_milliseconds(tmp_path):
    from markets import export

    written = _write(_delta_rows(0, ["1"]), tmp_path / "part-0.parquet")
    assert written.metadata.num_rows == 0
    assert written.schema_arrow.field("ts").type == export.UTC_MILLIS


def test_counts_take_a_dictionary_only_where_it_is_smaller():
    from markets.export import _encodings

    rng = random.Random(1)
    round_lots = _delta_rows(5000, [rng.choice(("1", "-5", "10", "-100", "250"))
                                    for _ in range(5000)])
    assert "delta" in _encodings(round_lots.schema, round_lots)["use_dictionary"]
    distinct = _delta_rows(5000, [f"{rng.randint(-20000, 20000)}.{rng.randint(0, 99):02d}"
                                  for _ in range(5000)])
    assert _encodings(distinct.schema, distinct)["column_encoding"]["delta"] == (
        "DELTA_BINARY_PACKED")


def _documented_reading() -> str:
    """docs/bulk.md's python block for pyarrow, pandas and Polars."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "bulk.md").read_text()
    match = re.search(r"holds both kinds exactly:\n\n```python\n(.*?)```", text, re.DOTALL)
    assert match
    return match.group(1)


def test_a_dataset_mixing_milliseconds_and_microseconds_reads_as_documented(tmp_path):
    """One day's exchange times are whole milliseconds, the next day's are
    not: their files store them in different units, and pyarrow, pandas and
    Polars, given the schema docs/bulk.md shows, read both exactly, as
    DuckDB does as it is."""
    from datetime import datetime, timezone

    midnight = datetime(2026, 11, 19, tzinfo=timezone.utc)
    record_day(DAY, start=midnight - timedelta(seconds=30), millis_before=midnight)
    export_dataset(start_date=DAY, end_date=DAY + timedelta(days=1), out_dir=tmp_path,
                   tables=["trades"])
    units = [pq.read_schema(file_path(tmp_path, "trades", day, "parquet")).field("ts").type.unit
             for day in (DAY, DAY + timedelta(days=1))]
    assert units == ["ms", "us"]
    stored = _stored("SELECT ts, trade_id FROM trades WHERE market_ticker = %s "
                     "ORDER BY ts, trade_id", [HOT])
    assert any(ts.microsecond % 1000 for ts, _ in stored)
    with pytest.raises(pa.ArrowInvalid, match="would lose data"):  # why the doc gives a schema
        pq.read_table(tmp_path / "type=trades")

    names = {}
    exec(_documented_reading().replace("/data/kalshi", str(tmp_path))
         .replace("KXHIGHNY-26NOV24-T60", HOT), names)
    assert sorted(zip(names["table"].column("ts").to_pylist(),
                      names["table"].column("trade_id").to_pylist())) == stored
    frame = names["frame"].sort_values(["ts", "trade_id"])
    assert [(t.to_pydatetime(), i) for t, i in zip(frame["ts"], frame["trade_id"])] == stored
    lazy = names["lazy"].sort(["ts", "trade_id"]).collect()
    assert list(zip(lazy["ts"].to_list(), lazy["trade_id"].to_list())) == stored
    duck = duckdb.connect().execute(
        f"SELECT ts, trade_id FROM read_parquet('{tmp_path}/type=trades/*/*.parquet') "
        "WHERE market_ticker = ? ORDER BY ts, trade_id", [HOT]).fetchall()
    assert duck == stored
