"""Deltas stored compactly (markets/record/compact.py) read back exactly as written."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.db import DataError, connection, transaction

from markets import ingest
from markets.partitioning import forget_known_partitions
from markets.record import compact
from markets.record.schema import DELTAS

MIDNIGHT = datetime(2026, 11, 24, tzinfo=timezone.utc)
US = timedelta(microseconds=1)

# Both sides, sub-cent prices, fractional and negative sizes, a missing
# exchange time, two markets, and both sides of midnight UTC.
ROWS = [
    ("KXA-26NOV24-T1", MIDNIGHT - US, 1_764_000_000_000_001, 3, 41, "yes", D("0.5600"), D("136.00"),
     MIDNIGHT - 2 * US),
    ("KXA-26NOV24-T1", MIDNIGHT, 1_764_000_000_000_001, 3, 42, "no", D("0.0001"), D("-0.01"),
     None),
    ("KXB-26NOV24-T2", MIDNIGHT + US, 1_764_000_000_000_001, 3, 43, "no", D("0.9999"),
     D("-123456789.75"), MIDNIGHT),
    ("KXB-26NOV24-T2", MIDNIGHT + 2 * US, 1_764_000_000_000_002, 9, 1, "yes", D("1.0000"),
     D("0.50"), MIDNIGHT + US),
]


def _view_rows():
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(DELTAS.columns)} FROM orderbook_deltas "
                       "ORDER BY received_at")
        return cursor.fetchall()


def _partitions(parent):
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_inherits i "
                       "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                       "WHERE p.relname = %s ORDER BY 1", [parent])
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_migration_moves_existing_deltas_in_place_and_back():
    call_command("migrate", "markets", "0006", verbosity=0)
    try:
        with connection.cursor() as cursor:
            for day in (MIDNIGHT - timedelta(days=1), MIDNIGHT):
                name = f"orderbook_deltas_{day:%Y_%m_%d}"
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF orderbook_deltas FOR VALUES "
                               f"FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')")
                cursor.execute(f"COMMENT ON TABLE {name} IS 'psqlextra_auto_partitioned'")
            cursor.executemany(
                f"INSERT INTO orderbook_deltas ({', '.join(DELTAS.columns)}) "
                f"VALUES ({', '.join(['%s'] * len(DELTAS.columns))})", ROWS)

        old = _partitions("orderbook_deltas")
        assert ("orderbook_deltas_2026_11_23", "psqlextra_auto_partitioned") in old

        call_command("migrate", "markets", "0007", verbosity=0)
        forget_known_partitions()
        assert _view_rows() == ROWS
        # The same days, with their psqlextra marks, under the new table's name.
        assert _partitions("orderbook_delta_rows") == [
            (name.replace("orderbook_deltas", "orderbook_delta_rows"), mark) for name, mark in old]
        # A market keeps its id: a new delta of it is read back with it.
        later = ("KXA-26NOV24-T1", MIDNIGHT + 3 * US, 1_764_000_000_000_002, 9, 2, "yes",
                 D("0.5700"), D("1.00"), None)
        assert ingest.deltas_append([later]) == 1
        assert _view_rows() == ROWS + [later]
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM record_markets")
            assert cursor.fetchone()[0] == 2

        call_command("migrate", "markets", "0006", verbosity=0)
        assert _view_rows() == ROWS + [later]
        assert _partitions("orderbook_deltas") == old
    finally:
        call_command("migrate", verbosity=0)
        forget_known_partitions()


@pytest.mark.django_db
def test_both_write_paths_store_the_same_row():
    assert ingest.deltas_append(ROWS[:2]) == 2
    assert ingest.deltas_ingest(ROWS) == 2  # the first two are stored already
    assert _view_rows() == ROWS
    with connection.cursor() as cursor:
        cursor.execute("SELECT price, delta, side FROM orderbook_delta_rows ORDER BY received_at")
        assert cursor.fetchall() == [(5600, 13600, 1), (1, -1, 2), (9999, -12345678975, 2),
                                     (10000, 50, 1)]


@pytest.mark.django_db
@pytest.mark.parametrize("price, delta", [(D("0.56001"), D("1.00")), (D("0.5600"), D("1.001")),
                                          (D("214748.3648"), D("1.00"))])
def test_a_value_that_does_not_fit_is_refused_not_wrapped(price, delta):
    row = ROWS[0][:6] + (price, delta, None)
    with pytest.raises(DataError, match="numeric value"):
        ingest.deltas_append([row])
    assert _view_rows() == []


@pytest.mark.django_db
def test_a_market_id_given_in_a_transaction_that_rolls_back_is_not_reused():
    with pytest.raises(RuntimeError), transaction.atomic():
        ingest.deltas_append(ROWS[:1])
        raise RuntimeError("rolled back")
    assert ingest.deltas_append(ROWS[:1]) == 1
    assert _view_rows() == ROWS[:1]
    with connection.cursor() as cursor:
        assert compact.market_ids(cursor, ["KXA-26NOV24-T1"]) == compact.market_ids(
            cursor, ["KXA-26NOV24-T1", "KXA-26NOV24-T1"])
