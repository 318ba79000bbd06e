"""Partitioned storage: tables, partition window, routing, idempotent loads."""

import io
from contextlib import redirect_stdout
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from markets import ingest
from markets.models import OrderbookDelta, OrderbookSnapshot, Trade
from markets.partitioning import PARTITIONED_MODELS, ensure_partitions, existing_partitions

pytestmark = pytest.mark.django_db

UTC = timezone.utc


def _partition_of(table, where, params):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE {where}", params)
        return [row[0] for row in cursor.fetchall()]


def _trade(ts, trade_id="t-1", ticker="MKT-A"):
    return (
        ticker, ts, trade_id, Decimal("0.3600"), Decimal("0.6400"), Decimal("136.00"),
        "no", "ask", "no", False, ts, "ws",
    )


def _delta(received_at, seq, ticker="MKT-A", session_id=1, delta="-54.00"):
    return (ticker, received_at, session_id, 2, seq, "yes", Decimal("0.9600"), Decimal(delta), None)


def test_every_time_series_table_is_range_partitioned():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pt.partstrat FROM pg_partitioned_table pt "
            "JOIN pg_class c ON c.oid = pt.partrelid ORDER BY c.relname"
        )
        partitioned = dict(cursor.fetchall())
    assert partitioned == {"orderbook_delta_packs": "r", "orderbook_delta_rows": "r",
                           "orderbook_snapshots": "r", "trades": "r"}


def test_pgpartition_created_the_daily_window_by_name(settings):
    today = datetime.now(UTC).date()
    for model in PARTITIONED_MODELS:
        names = set(existing_partitions(model))
        table = model._meta.db_table
        for offset in range(-settings.PARTITION_DAYS_BEHIND, settings.PARTITION_DAYS_AHEAD + 1):
            day = today + timedelta(days=offset)
            assert f"{table}_{day:%Y_%m_%d}" in names
        assert not any(name.endswith("_default") for name in names)


def test_second_pgpartition_run_changes_nothing():
    before = {m: existing_partitions(m) for m in PARTITIONED_MODELS}
    out = io.StringIO()
    with redirect_stdout(out):
        call_command("pgpartition", "--yes")
    assert "Nothing to be done." in out.getvalue()
    assert {m: existing_partitions(m) for m in PARTITIONED_MODELS} == before


def test_rows_route_to_their_utc_day_across_midnight():
    last_instant = datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    midnight = datetime(2026, 3, 2, 0, 0, 0, tzinfo=UTC)
    ingest.trades_ingest([_trade(last_instant, "before"), _trade(midnight, "after")])
    ingest.deltas_ingest([_delta(last_instant, 1), _delta(midnight, 2)])

    assert _partition_of("trades", "trade_id = %s", ["before"]) == ["trades_2026_03_01"]
    assert _partition_of("trades", "trade_id = %s", ["after"]) == ["trades_2026_03_02"]
    assert _partition_of("orderbook_delta_rows", "seq = %s", [1]) == ["orderbook_delta_rows_2026_03_01"]
    assert _partition_of("orderbook_delta_rows", "seq = %s", [2]) == ["orderbook_delta_rows_2026_03_02"]


def test_a_time_in_another_zone_routes_by_its_utc_day():
    # 20:30 in New York on 1 March is 01:30 UTC on 2 March.
    new_york = timezone(timedelta(hours=-5))
    ingest.trades_ingest([_trade(datetime(2026, 3, 1, 20, 30, tzinfo=new_york), "ny")])
    assert _partition_of("trades", "trade_id = %s", ["ny"]) == ["trades_2026_03_02"]


def test_same_trade_twice_is_stored_once():
    ts = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    assert ingest.trades_ingest([_trade(ts)]) == 1
    assert ingest.trades_ingest([_trade(ts), _trade(ts)]) == 0
    assert Trade.objects.filter(trade_id="t-1").count() == 1


def test_same_delta_twice_is_stored_once():
    received = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    assert ingest.deltas_ingest([_delta(received, 7)]) == 1
    assert ingest.deltas_ingest([_delta(received, 7)]) == 0
    assert OrderbookDelta.objects.count() == 1


def test_same_snapshot_twice_is_stored_once_with_its_levels_exact():
    received = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    row = ("MKT-A", received, 1, 2, 3, "subscribe", [["0.0800", "300.00"]], [], None)
    assert ingest.snapshots_ingest([row, row]) == 1
    snap = OrderbookSnapshot.objects.get()
    assert snap.yes_levels == [["0.0800", "300.00"]]
    assert snap.no_levels == []


def test_fractional_sizes_and_sub_cent_prices_are_stored_exactly():
    ts = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    row = list(_trade(ts, "frac"))
    row[3], row[4], row[5] = Decimal("0.0001"), Decimal("0.9999"), Decimal("74.77")
    ingest.trades_ingest([tuple(row)])
    trade = Trade.objects.get(trade_id="frac")
    assert (trade.yes_price, trade.no_price, trade.count) == (
        Decimal("0.0001"), Decimal("0.9999"), Decimal("74.77"),
    )


def test_backfill_skips_a_trade_already_stored_under_another_timestamp():
    ws_time = datetime(2026, 5, 5, 12, 0, 0, 123000, tzinfo=UTC)
    rest_time = datetime(2026, 5, 5, 12, 0, 0, tzinfo=UTC)
    ingest.trades_ingest([_trade(ws_time, "same-id")])
    assert ingest.trades_ingest_new_ids([_trade(rest_time, "same-id"), _trade(rest_time, "new")]) == 1
    assert sorted(Trade.objects.values_list("trade_id", flat=True)) == ["new", "same-id"]


def test_writers_create_partitions_for_days_outside_the_window():
    long_ago = datetime(2024, 1, 15, 8, 0, tzinfo=UTC)
    assert "trades_2024_01_15" not in existing_partitions(Trade)
    assert ingest.trades_ingest([_trade(long_ago, "old")]) == 1
    assert "trades_2024_01_15" in existing_partitions(Trade)


def test_ensure_partitions_is_idempotent():
    day = date(2024, 2, 1)
    first = ensure_partitions(Trade, [day])
    second = ensure_partitions(Trade, [day])
    assert first == ["trades_2024_02_01"]
    assert second == []


@pytest.mark.django_db(transaction=True)
def test_partition_ddl_fails_fast_when_a_reader_holds_the_table(settings):
    """A long reader makes pgpartition fail after lock_timeout instead of queueing."""
    settings.PARTITION_DAYS_AHEAD = 40  # days that do not exist yet
    params = connection.get_connection_params()
    reader = psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
    try:
        reader.execute("BEGIN")
        reader.execute("LOCK TABLE trades IN ACCESS SHARE MODE")
        with override_settings(PARTITION_LOCK_TIMEOUT="200ms"):
            # Without the timeout this call would queue behind the reader forever.
            with pytest.raises(Exception) as excinfo:
                call_command("pgpartition", "--yes")
        assert "lock timeout" in str(excinfo.value).lower()
    finally:
        reader.rollback()
        reader.close()


def test_check_storage_reports_each_table():
    out = io.StringIO()
    call_command("check_storage", stdout=out)
    text = out.getvalue()
    for table in ("trades", "orderbook_delta_rows", "orderbook_snapshots"):
        assert f"{table}: ok partitioned=True" in text
    assert "days_ahead=" in text and "rows_in_default=0" in text


def test_check_storage_fails_when_no_partition_lies_ahead(settings):
    with connection.cursor() as cursor:
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        cursor.execute(f"DROP TABLE trades_{tomorrow:%Y_%m_%d}")
    with pytest.raises(CommandError):
        call_command("check_storage", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_a_closed_days_indexes_are_packed_once():
    """pack_closed_days rebuilds the indexes of ended days only, once, and
    the rows read back the same."""
    from markets.partitioning import PACKED_COMMENT, pack_closed_days

    today = datetime.now(UTC).date()
    yesterday = datetime.combine(today - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    # Rows in time order, markets interleaved: the order that half-fills a B-tree.
    rows = [_delta(yesterday + timedelta(microseconds=i), i, ticker=f"M-{i % 50}")
            for i in range(20_000)]
    ingest.deltas_append(rows)

    def index_bytes(name):
        with connection.cursor() as cursor:
            cursor.execute("SELECT sum(pg_relation_size(indexrelid)) FROM pg_index "
                           "WHERE indrelid = %s::regclass", [name])
            return int(cursor.fetchone()[0])

    partition = f"orderbook_delta_rows_{yesterday:%Y_%m_%d}"
    before, stored = index_bytes(partition), OrderbookDelta.objects.count()
    packed = pack_closed_days(today=today)
    assert partition in packed
    assert not any(name.endswith(f"{today:%Y_%m_%d}") for name in packed)  # not ended yet
    assert index_bytes(partition) < 0.75 * before
    assert OrderbookDelta.objects.count() == stored
    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description(indexrelid, 'pg_class') FROM pg_index "
                       "WHERE indrelid = %s::regclass AND indisprimary", [partition])
        assert cursor.fetchone()[0] == PACKED_COMMENT
    assert partition not in pack_closed_days(today=today)  # once
