"""Every read of the API answers the same for a day moved to the lake as before.

A record over two UTC days (deltas, subscribe snapshots, checkpoints,
trades with fractional sizes, a sequence gap, a disconnect, lifecycle
messages) is read through every endpoint; then `archive` moves the older
day to the Parquet lake and drops its partitions, and every request is
made again: the bodies are the same bytes, but for the request id and the
response time.
"""

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D

import pyarrow.parquet as pq
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection

from markets import ingest
from markets.models import LakeDay
from markets.partitioning import partition_name
from markets.record.lake import ARCHIVED
from tests.recorded import HOT, QUIET, record_day

pytestmark = pytest.mark.django_db

OLD, NEW = date(2026, 11, 19), date(2026, 11, 20)
# Half a minute before midnight: the record (about a minute) spans both days.
START = datetime(2026, 11, 19, 23, 59, 30, tzinfo=timezone.utc)
_VOLATILE = re.compile(rb'"(request_id|response_time)":("[^"]*"|[0-9.e-]+)')


@pytest.fixture
def record(settings, tmp_path):
    settings.LAKE_URL = str(tmp_path / "lake")
    return record_day(OLD, start=START)


def _iso(value):
    return value.isoformat().replace("+00:00", "Z")


def _body(response) -> bytes:
    assert response.status_code == 200, response.content[:500]
    body = (b"".join(response.streaming_content) if response.streaming
            else response.content)
    return _VOLATILE.sub(rb'"\1":-', body)


def _pages(client, path, query) -> list[bytes]:
    """Every page of a cursor-paginated list."""
    bodies, cursor = [], None
    while True:
        response = client.get(path, {**query, **({"cursor": cursor} if cursor else {})})
        bodies.append(_body(response))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return bodies


def _answers(client, record) -> dict[str, object]:
    """The responses of every endpoint that reads the record, by request."""
    cache.clear()
    first, last = record.first, record.last
    span = {"start_time": _iso(first - timedelta(seconds=1)),
            "end_time": _iso(last + timedelta(seconds=1))}
    answers = {}
    instants = record.instants
    checks = [first - timedelta(seconds=5), record.gap.detected_at,
              record.gap.detected_at + timedelta(milliseconds=50), record.gap.recovered_at,
              datetime(2026, 11, 20, tzinfo=timezone.utc) - timedelta(microseconds=1),
              datetime(2026, 11, 20, tzinfo=timezone.utc), record.disconnect, last,
              *instants[::97]]
    for ticker in (HOT, QUIET):
        for at in checks:
            answers[f"orderbook {ticker} {_iso(at)}"] = _body(client.get(
                "/api/v1/orderbook", {"market_ticker": ticker, "timestamp": _iso(at)}))
        for kind in ("deltas", "trades"):
            answers[f"{kind} {ticker}"] = _pages(
                client, f"/api/v1/{kind}", {"market_ticker": ticker, "limit": 97, **span})
        answers[f"book_snapshots {ticker}"] = _pages(client, "/api/v1/book_snapshots", {
            "market_ticker": ticker, "interval": "1s", "depth": 5, "limit": 40, **span})
        answers[f"coverage {ticker}"] = _body(client.get("/api/v1/coverage", {
            "market_ticker": ticker, "start_date": "2026-11-18", "end_date": "2026-11-21"}))
        answers[f"market {ticker}"] = _body(client.get(f"/api/v1/markets/{ticker}"))
        for interval in ("1m", "5m", "1h"):
            # The range starts and ends inside minutes: those come from raw trades.
            answers[f"candles {ticker} {interval}"] = _body(client.get(
                f"/api/v1/candles/{ticker}", {
                    "interval": interval, "start_time": _iso(first + timedelta(seconds=7)),
                    "end_time": _iso(last - timedelta(seconds=3)), "carry_forward": "true"}))
    answers["markets"] = _body(client.get("/api/v1/markets"))
    answers["replay"] = _body(client.get("/api/v1/replay", {
        "market_tickers": f"{HOT},{QUIET}", "types": "deltas,trades,lifecycle", **span}))
    answers["replay from the old day"] = _body(client.get("/api/v1/replay", {
        "market_tickers": HOT, "types": "deltas,trades",
        "start_time": _iso(record.gap.recovered_at),
        "end_time": _iso(datetime(2026, 11, 20, 0, 0, 5, tzinfo=timezone.utc))}))
    return answers


def _partition_exists(model, day) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [partition_name(model, day)])
        return cursor.fetchone()[0] is not None


def test_every_endpoint_answers_the_same_after_the_day_moves_to_the_lake(client, record):
    assert record.first.date() == OLD and record.last.date() == NEW
    before = _answers(client, record)
    # The answers hold the record, on both days.
    assert before["replay"].count(b"\n") > 2000 and len(before[f"deltas {HOT}"]) > 10
    assert b'"date":"2026-11-19","status":"degraded"' in before[f"coverage {HOT}"]
    assert b'"date":"2026-11-20","status":"degraded"' in before[f"coverage {HOT}"]

    today = datetime.now(timezone.utc).date()
    call_command("archive", "--older-than", f"{(today - NEW).days}d")
    for table in ARCHIVED:
        day = LakeDay.objects.get(table=table.name, day=OLD)
        assert day.rows > 0 and day.verified_at and day.dropped_at
        assert not _partition_exists(table.stored_model, OLD)
        assert _partition_exists(table.stored_model, NEW)
        assert not LakeDay.objects.filter(table=table.name, day=NEW).exists()
    # pgpartition does not bring the dropped days back (empty, hiding the lake).
    call_command("pgpartition", "--yes")
    assert not any(_partition_exists(table.stored_model, OLD) for table in ARCHIVED)

    after = _answers(client, record)
    assert after.keys() == before.keys()
    assert [request for request in before if after[request] != before[request]] == []


def test_keep_partitions_writes_the_lake_and_keeps_the_days(client, record):
    today = datetime.now(timezone.utc).date()
    call_command("archive", "--older-than", f"{(today - NEW).days}d", "--keep-partitions")
    for table in ARCHIVED:
        day = LakeDay.objects.get(table=table.name, day=OLD)
        assert day.verified_at and day.dropped_at is None
        assert _partition_exists(table.stored_model, OLD)
    # The next run without the flag drops the verified days.
    call_command("archive", "--older-than", f"{(today - NEW).days}d")
    assert not any(_partition_exists(table.stored_model, OLD) for table in ARCHIVED)


def _exchange_time_unit(lake_dir, table, day) -> str:
    return pq.read_schema(lake_dir / f"type={table}" / f"date={day}" / "part-0.parquet"
                          ).field("ts").type.unit


@pytest.mark.parametrize("store", ["local", "object store"])
def test_days_stored_in_milliseconds_and_microseconds_read_together(
        client, settings, tmp_path, monkeypatch, store):
    """Exchange times are whole milliseconds before midnight (Kalshi's ts_ms)
    and carry microseconds after it (the RFC 3339 ts): the older day's files
    store them in milliseconds, the newer day's in microseconds. With both
    days in the lake, every request that reads across midnight reads both
    kinds of file at once (DuckDB on a local lake, a pyarrow dataset on an
    object store) and answers as PostgreSQL did; a late trade with
    microseconds turns its day's file to microseconds when it is folded in."""
    lake_dir = tmp_path / "lake"
    settings.LAKE_URL = str(lake_dir)
    if store == "object store":
        from pyarrow import fs as pafs

        from markets.management.commands import archive
        from markets.objectstore import Location
        from markets.record import lake

        lake_dir.mkdir()
        location = Location("mock://lake", pafs.SubTreeFileSystem(
            str(tmp_path), pafs.LocalFileSystem()), "lake")
        monkeypatch.setattr(lake, "lake_location", lambda: location)
        monkeypatch.setattr(archive, "lake_location", lambda: location)
    midnight = datetime(2026, 11, 20, tzinfo=timezone.utc)
    record = record_day(OLD, start=START, millis_before=midnight)
    before = _answers(client, record)

    today = datetime.now(timezone.utc).date()
    call_command("archive", "--older-than", f"{(today - NEW).days - 1}d")
    assert LakeDay.objects.filter(dropped_at__isnull=False).count() == 2 * len(ARCHIVED)
    for table in ("deltas", "trades"):
        assert _exchange_time_unit(lake_dir, table, OLD) == "ms"
        assert _exchange_time_unit(lake_dir, table, NEW) == "us"
    assert _exchange_time_unit(lake_dir, "snapshots", OLD) == "ms"  # no ts at all
    after = _answers(client, record)
    assert [request for request in before if after[request] != before[request]] == []

    # A backfilled trade with microseconds, for the day stored in milliseconds.
    late = midnight - timedelta(seconds=20, microseconds=1)
    assert late.microsecond % 1000
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE _staging_trades")  # ingest's staging empties ON COMMIT
    ingest.trades_ingest([(HOT, late, "late-us", D("0.4200"), D("0.5800"), D("2.25"), "no",
                           None, None, False, late + timedelta(days=3), "rest")])
    trades = {"market_ticker": HOT, "limit": 1000, "start_time": _iso(record.first),
              "end_time": _iso(record.last + timedelta(seconds=1))}
    served = _body(client.get("/api/v1/trades", trades))
    assert f'"ts":"{_iso(late)}"'.encode() in served
    call_command("archive", "--older-than", f"{(today - NEW).days - 1}d")
    assert LakeDay.objects.get(table="trades", day=OLD).dropped_at
    assert _exchange_time_unit(lake_dir, "trades", OLD) == "us"
    assert _body(client.get("/api/v1/trades", trades)) == served
