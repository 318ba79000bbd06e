"""Closed days' deltas in chunks (markets/record/packs.py): writes and the migration."""

import io
import threading
from datetime import date
from decimal import Decimal as D

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from collector import reingest
from markets import ingest
from markets.models import LakeDay
from markets.partitioning import existing_partitions, forget_known_partitions, pack_closed_days
from markets.storage import packs_report
from markets.record import compact, packs, reads
from markets.record.lake import archive_day, drop_day, fold_late_rows
from markets.record.schema import DELTAS
from tests.markets.test_compact_deltas import MIDNIGHT, ROWS, US, _view_rows

# Both days of ROWS have closed.
TODAY = date(2026, 11, 26)
# A delta of the first day that arrives after it was packed.
LATE = ("KXA-26NOV24-T1", MIDNIGHT - 3 * US, 1_764_000_000_000_001, 3, 40, "no", D("0.0100"),
        D("2.50"), None)


def _count(sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def _loose():
    return _count("SELECT count(*) FROM orderbook_delta_rows")


def _packed():
    return _count(f"SELECT coalesce(sum(deltas), 0) FROM {packs.TABLE}")


def _pack_partitions():
    return existing_partitions(packs.TABLE)


@pytest.mark.django_db
def test_a_late_delta_of_a_packed_day_is_read_with_the_chunks_and_packed_next():
    assert ingest.deltas_append(ROWS) == 4
    pack_closed_days(today=TODAY)
    assert (_loose(), _packed()) == (0, 4)
    # The collector's COPY lands in the day's partition, which packing kept.
    assert ingest.deltas_append([LATE]) == 1
    assert (_loose(), _packed()) == (1, 4)
    assert _view_rows() == sorted(ROWS + [LATE], key=lambda r: r[1])
    pack_closed_days(today=TODAY)
    assert (_loose(), _packed()) == (0, 5)
    # The market's chunk of that day was cut again with it: one chunk, in order.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT deltas, received_at FROM {packs.TABLE} p JOIN record_markets m "
                       "ON m.id = p.market_id WHERE m.ticker = %s AND first_at < %s",
                       [LATE[0], MIDNIGHT])
        assert cursor.fetchall() == [(2, [LATE[1], ROWS[0][1]])]
    assert _view_rows() == sorted(ROWS + [LATE], key=lambda r: r[1])


@pytest.mark.django_db
def test_ingest_does_not_store_again_a_delta_that_is_in_a_chunk():
    assert ingest.deltas_append(ROWS) == 4
    pack_closed_days(today=TODAY)
    assert ingest.deltas_ingest(ROWS + [LATE]) == 1
    assert (_loose(), _packed()) == (1, 4)
    assert _view_rows() == sorted(ROWS + [LATE], key=lambda r: r[1])


@pytest.mark.django_db
def test_a_delete_unpacks_the_chunk_it_touches_and_keeps_its_other_deltas():
    assert ingest.deltas_append(ROWS + [LATE]) == 5
    pack_closed_days(today=TODAY)
    with connection.cursor() as cursor:
        cursor.execute(compact.delete_sql(DELTAS, "t.market_ticker = %(m)s AND t.received_at "
                                          ">= %(lo)s AND t.received_at < %(hi)s",
                                          within=("%(lo)s", "%(hi)s")),
                       {"m": LATE[0], "lo": LATE[1], "hi": LATE[1] + US})
        assert cursor.rowcount == 1  # the packed delta counts as deleted
    assert _view_rows() == ROWS
    # The other delta of that chunk is loose again; the other chunks are untouched.
    assert (_loose(), _packed()) == (1, 3)


@pytest.mark.django_db
def test_a_delete_counts_the_loose_and_the_packed_deltas_it_removes():
    assert ingest.deltas_append(ROWS) == 4
    pack_closed_days(today=TODAY)
    assert ingest.deltas_append([LATE]) == 1  # loose, beside the day's chunks
    with connection.cursor() as cursor:
        cursor.execute(compact.delete_sql(DELTAS, "t.market_ticker = %(m)s AND t.received_at "
                                          "< %(hi)s", within=("%(lo)s", "%(hi)s")),
                       {"m": LATE[0], "lo": LATE[1], "hi": MIDNIGHT})
        assert cursor.rowcount == 2
    assert _view_rows() == [r for r in ROWS if not (r[0] == LATE[0] and r[1] < MIDNIGHT)]


@pytest.mark.django_db
def test_a_dropped_day_whose_late_delta_was_packed_is_folded_back(settings, tmp_path):
    settings.LAKE_URL = str(tmp_path / "lake")
    assert ingest.deltas_append(ROWS) == 4
    day = (MIDNIGHT - US).date()
    pack_closed_days(today=TODAY)
    # Each day's chunks have a partition of their own, dropped with the day.
    both = ["orderbook_delta_packs_2026_11_23", "orderbook_delta_packs_2026_11_24"]
    assert _pack_partitions() == both
    assert archive_day(DELTAS, day).verified
    assert drop_day(DELTAS, day)
    assert _pack_partitions() == both[1:]
    assert _count(f"SELECT count(*) FROM {packs.TABLE} WHERE first_at < "
                  f"'{MIDNIGHT.isoformat()}'") == 0
    assert _packed() == 3
    forget_known_partitions()
    assert ingest.deltas_append([LATE]) == 1  # recreates the day's partition
    pack_closed_days(today=TODAY)
    assert _pack_partitions() == both
    assert (_loose(), _packed()) == (0, 4)
    assert fold_late_rows(DELTAS, day) == 1  # the file's one row of that day
    assert not LakeDay.objects.get(table="deltas", day=day).dropped_at
    assert _view_rows() == sorted(ROWS + [LATE], key=lambda r: r[1])
    pack_closed_days(today=TODAY)
    assert (_loose(), _packed()) == (0, 5)
    assert _view_rows() == sorted(ROWS + [LATE], key=lambda r: r[1])


@pytest.mark.django_db(transaction=True)
def test_migration_unpacks_the_chunks_and_back():
    try:
        assert ingest.deltas_append(ROWS) == 4
        pack_closed_days(today=TODAY)
        assert (_loose(), _packed()) == (0, 4)
        # 0009 back and forth with chunks stored: one table, then a partition a day.
        call_command("migrate", "markets", "0008", verbosity=0)
        assert (_loose(), _packed(), _pack_partitions()) == (0, 4, [])
        assert _view_rows() == ROWS
        call_command("migrate", "markets", "0009", verbosity=0)
        assert (_loose(), _packed()) == (0, 4)
        assert _pack_partitions() == ["orderbook_delta_packs_2026_11_23",
                                      "orderbook_delta_packs_2026_11_24"]
        assert _view_rows() == ROWS
        call_command("migrate", "markets", "0007", verbosity=0)
        assert _view_rows() == ROWS
        assert _loose() == 4
        call_command("migrate", "markets", verbosity=0)
        assert _view_rows() == ROWS
        pack_closed_days(today=TODAY)
        assert (_loose(), _packed()) == (0, 4)
        assert _view_rows() == ROWS
    finally:
        call_command("migrate", verbosity=0)
        forget_known_partitions()
        with connection.cursor() as cursor:  # not a model: the test's flush leaves it
            cursor.execute(f"DELETE FROM {packs.TABLE}")


@pytest.mark.django_db(transaction=True)
def test_an_ingest_racing_the_packing_of_its_day_stores_no_delta_twice():
    """The journal is loaded back into yesterday while `archive` packs it.

    The ingest's INSERT looks for its deltas in the chunks and, through ON
    CONFLICT, in the loose rows; with the packing committed in between, it
    would find them in neither and store each twice. It waits for the
    packing instead (compact.insert_sql) and then finds them in the chunks.
    """
    assert ingest.deltas_append(ROWS) == 4
    packed, release, done = threading.Event(), threading.Event(), []

    def pack():
        try:
            with transaction.atomic():
                for day in sorted({row[1].date() for row in ROWS}):
                    packs.pack_day(day)
                packed.set()
                release.wait(30)
        finally:
            connection.close()

    def load():
        try:
            done.append(ingest.deltas_ingest(ROWS))
        finally:
            connection.close()

    packer = threading.Thread(target=pack)
    packer.start()
    assert packed.wait(30)
    loader = threading.Thread(target=load)
    loader.start()
    loader.join(0.5)
    assert loader.is_alive()  # it waits for the packing to commit
    release.set()
    packer.join(30)
    loader.join(30)
    assert done == [0]
    assert (_loose(), _packed()) == (0, 4)
    assert _view_rows() == ROWS


@pytest.mark.django_db(transaction=True)
def test_two_reingests_of_packed_deltas_at_once_do_not_deadlock(monkeypatch):
    """Each re-ingest deletes (ROW EXCLUSIVE on the chunks) and then loads
    (SHARE): run side by side, each load would wait for the other's delete.
    packs.lock_rewrites makes the second wait for the first to commit."""
    assert ingest.deltas_append(ROWS) == 4
    pack_closed_days(today=TODAY)
    both_deleted = threading.Barrier(2, timeout=2)
    insert_sql = compact.insert_sql

    def insert_when_both_deleted(*args, **kwargs):
        try:
            both_deleted.wait()  # without the lock both get here, and deadlock
        except threading.BrokenBarrierError:
            pass  # the other one waits for this one to commit
        return insert_sql(*args, **kwargs)

    monkeypatch.setattr(compact, "insert_sql", insert_when_both_deleted)
    sessions = sorted({row[2] for row in ROWS})
    results, errors = [], []

    def repair():
        try:
            results.append(reingest._repair(reingest.TABLES["deltas"], ROWS, MIDNIGHT - US,
                                            MIDNIGHT + 3 * US, sessions, None, False))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=repair) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert results == [(0, 0), (0, 0)]
    assert _view_rows() == ROWS


@pytest.mark.django_db
def test_check_storage_flags_closed_days_whose_deltas_are_left_unpacked():
    assert ingest.deltas_append(ROWS) == 4  # the 23rd and the 24th
    report = packs_report(today=date(2026, 11, 25))
    assert (report.loose_days, report.packed_days) == ([date(2026, 11, 23), date(2026, 11, 24)], [])
    assert report.overdue == [date(2026, 11, 23)]  # yesterday may wait for tonight's archive
    with pytest.raises(CommandError, match="2 closed day"):  # both, today
        call_command("check_storage", stdout=io.StringIO())
    pack_closed_days(today=TODAY)
    report = packs_report(today=TODAY)
    assert (report.loose_days, report.packed_days) == ([], [date(2026, 11, 23), date(2026, 11, 24)])
    out = io.StringIO()
    call_command("check_storage", stdout=out)
    assert ("orderbook_delta_packs: ok packed_days=2 from=2026-11-23 to=2026-11-24 "
            "closed_days_with_loose_deltas=0") in out.getvalue()


@pytest.mark.django_db
def test_a_read_of_today_that_runs_past_midnight_asks_the_chunks_too(monkeypatch):
    """reads.rows() reads only the loose rows of today, and checks the clock
    after its query: past midnight, the day may have been packed meanwhile."""
    assert ingest.deltas_append(ROWS) == 4
    pack_closed_days(today=TODAY)
    answers = iter([False, True])  # before the query, then after it
    monkeypatch.setattr(packs, "may_be_packed", lambda start: next(answers))
    found = reads.rows(DELTAS, market_ticker=ROWS[2][0], columns=DELTAS.columns,
                       order=DELTAS.replay_order, start=MIDNIGHT, end=MIDNIGHT + US * 10,
                       limit=10)
    assert found == [r for r in ROWS if r[0] == ROWS[2][0]]
