"""`manage.py archive`: closed days written to the Parquet lake, verified market by market."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import F

from markets import ingest
from markets.models import LakeDay, LakeMarketDay, OrderbookDelta, StoredDelta, TradeBar
from markets.record import lake
from markets.record.schema import DELTAS, SNAPSHOTS, TRADES
from tests.engines.uncrossed import MARKET, OTHER, record_engine_day

pytestmark = pytest.mark.django_db

OLD = date(2026, 11, 20)


@pytest.fixture
def lake_dir(settings, tmp_path):
    settings.LAKE_URL = str(tmp_path / "lake")
    return tmp_path / "lake"


def _count(table, market, day):
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table.db_table} WHERE market_ticker = %s "
                       f"AND {table.day_column} >= %s AND {table.day_column} < %s",
                       [market, start, start + timedelta(days=1)])
        return cursor.fetchone()[0]


def test_archive_writes_and_verifies_closed_days_only(lake_dir):
    record_engine_day(OLD)
    today = datetime.now(timezone.utc).date()
    record_engine_day(today, seed=12)
    call_command("archive", "--older-than", "2d", "--keep-partitions")

    for table in (DELTAS, SNAPSHOTS, TRADES):
        day = LakeDay.objects.get(table=table.name, day=OLD)
        assert day.verified_at is not None and day.dropped_at is None
        path = lake_dir / day.path
        assert path == lake_dir / f"type={table.name}" / f"date={OLD}" / "part-0.parquet"
        assert pq.ParquetFile(path).metadata.num_rows == day.rows > 0
        for market in (MARKET, OTHER):
            kept = LakeMarketDay.objects.get(table=table.name, day=OLD, market_ticker=market)
            assert kept.rows == _count(table, market, OLD)
    assert not LakeDay.objects.filter(day=today).exists()  # not closed long enough
    # --keep-partitions: the days stay in PostgreSQL too.
    assert OrderbookDelta.objects.filter(received_at__date=OLD).exists()

    # Done days are not done again.
    assert lake.days_to_archive(timedelta(days=2)) == []


def test_verification_finds_a_changed_row_of_one_market(lake_dir):
    record_engine_day(OLD)
    lake.archive_day(DELTAS, OLD)
    path = lake_dir / LakeDay.objects.get(table="deltas", day=OLD).path
    assert lake.verify_file(DELTAS, OLD, path)[1] == []
    row = OrderbookDelta.objects.filter(market_ticker=OTHER, received_at__date=OLD).first()
    StoredDelta.objects.filter(market_id=row.market_id, received_at=row.received_at,
                               session_id=row.session_id).update(delta=F("delta") + 1)  # 0.01
    _, mismatches = lake.verify_file(DELTAS, OLD, path)
    assert [m.market_ticker for m in mismatches] == [OTHER]


def test_a_row_landing_while_archiving_keeps_the_day_out_of_the_lake(lake_dir, monkeypatch):
    record_engine_day(OLD)
    real_export = lake.export_day
    late = datetime(OLD.year, OLD.month, OLD.day, 23, 59, 59, 999_999, tzinfo=timezone.utc)

    def export_then_a_late_trade(**kwargs):
        exported = real_export(**kwargs)
        if (kwargs["table"], kwargs["day"]) != ("trades", OLD):
            return exported
        # A backfilled trade lands in the day after its file was written.
        ingest.trades_ingest([(MARKET, late, "late-1", D("0.5000"), D("0.5000"), D("1.00"),
                               "yes", None, None, False, late + timedelta(days=3), "rest")])
        return exported

    monkeypatch.setattr(lake, "export_day", export_then_a_late_trade)
    with pytest.raises(CommandError, match="did not verify"):
        call_command("archive", "--older-than", "2d", "--keep-partitions")
    trades_day = LakeDay.objects.get(table="trades", day=OLD)
    assert trades_day.verified_at is None
    assert not (lake_dir / trades_day.path).exists()
    assert lake.lake_report().unverified == [trades_day]

    # The next run writes the day again, with the late trade, and verifies it.
    monkeypatch.setattr(lake, "export_day", real_export)
    call_command("archive", "--older-than", "2d", "--keep-partitions")
    trades_day.refresh_from_db()
    assert trades_day.verified_at is not None and lake.lake_report().healthy
    assert pq.ParquetFile(lake_dir / trades_day.path).metadata.num_rows == _count(
        TRADES, MARKET, OLD) + _count(TRADES, OTHER, OLD)


def test_older_than_must_be_a_duration(lake_dir):
    with pytest.raises(CommandError, match="--older-than"):
        call_command("archive", "--older-than", "a week")


def test_check_storage_reports_the_lake_and_an_unverified_day(lake_dir, capsys):
    record_engine_day(OLD)
    call_command("archive", "--older-than", "2d")
    call_command("pgpartition", "--yes")
    call_command("check_storage")
    out = capsys.readouterr().out
    assert "lake: ok" in out and "unverified=0" in out
    LakeDay.objects.filter(table="trades", day=OLD).update(verified_at=None)
    with pytest.raises(CommandError, match="lake needs attention"):
        call_command("check_storage")
    assert f"trades {OLD}" in capsys.readouterr().out


def test_a_row_landing_after_verification_keeps_the_partition(lake_dir):
    record_engine_day(OLD)
    call_command("archive", "--older-than", "2d", "--keep-partitions")
    late = datetime(OLD.year, OLD.month, OLD.day, 23, 0, tzinfo=timezone.utc)
    ingest.trades_ingest([(MARKET, late, "late-2", D("0.5000"), D("0.5000"), D("1.50"),
                           "yes", None, None, False, late + timedelta(days=3), "rest")])
    with pytest.raises(CommandError, match="did not verify"):
        call_command("archive", "--older-than", "2d")
    trades_day = LakeDay.objects.get(table="trades", day=OLD)
    assert trades_day.verified_at is None and trades_day.dropped_at is None
    assert _count(TRADES, MARKET, OLD) > 0  # the partition is still there
    deltas_day = LakeDay.objects.get(table="deltas", day=OLD)
    assert deltas_day.dropped_at is not None  # the unchanged tables moved on

    # The next run writes the day again, with the late trade, then drops it.
    call_command("archive", "--older-than", "2d")
    trades_day.refresh_from_db()
    assert trades_day.dropped_at is not None and _count(TRADES, MARKET, OLD) == 0
    kept = LakeMarketDay.objects.get(table="trades", day=OLD, market_ticker=MARKET)
    assert kept.rows == trades_day.rows - LakeMarketDay.objects.get(
        table="trades", day=OLD, market_ticker=OTHER).rows


def test_export_refuses_a_day_moved_to_the_lake(lake_dir, tmp_path):
    record_engine_day(OLD)
    call_command("archive", "--older-than", "2d")
    with pytest.raises(CommandError, match="moved to the lake"):
        call_command("export", "--start-date", str(OLD), "--end-date", str(OLD),
                     "--types", "deltas", "--out", str(tmp_path / "out"))


def test_a_lake_on_an_object_store_is_read_through_pyarrow(lake_dir, monkeypatch):
    """Any pyarrow file system that is not the local one (here a sub-tree
    standing in for S3) is written by upload and read as a dataset."""
    from pyarrow import fs as pafs

    from markets.objectstore import Location
    from markets.replay import book_at
    from markets.selectors import trades_page

    lake_dir.mkdir(parents=True)
    store = Location("mock://lake", pafs.SubTreeFileSystem(str(lake_dir), pafs.LocalFileSystem()),
                     "bucket")
    assert store.local_path is None
    from markets.management.commands import archive

    monkeypatch.setattr(lake, "lake_location", lambda: store)
    monkeypatch.setattr(archive, "lake_location", lambda: store)
    record_engine_day(OLD)
    at = datetime(OLD.year, OLD.month, OLD.day, 10, 0, 30, tzinfo=timezone.utc)
    before = (book_at(MARKET, at), trades_page(market_ticker=MARKET, limit=50))
    call_command("archive", "--older-than", "2d")
    assert (lake_dir / "bucket" / "type=deltas" / f"date={OLD}" / "part-0.parquet").exists()
    assert _count(DELTAS, MARKET, OLD) == 0
    after = (book_at(MARKET, at), trades_page(market_ticker=MARKET, limit=50))
    assert after[0].book == before[0].book and after[0].deltas_applied > 0
    assert after[0].snapshot.received_at == before[0].snapshot.received_at
    assert after[1] == before[1] and len(before[1]) == 50

    # A late trade is folded into the day's object: read back, written again.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE _staging_trades")
    late = before[1][-1].ts + timedelta(microseconds=1)
    ingest.trades_ingest([(MARKET, late, "late-s3", D("0.4200"), D("0.5800"), D("2.25"), "no",
                           None, None, False, late + timedelta(days=3), "rest")])
    rows = LakeDay.objects.get(table="trades", day=OLD).rows
    call_command("archive", "--older-than", "2d")
    assert lake.days_with_late_rows() == [] and _count(TRADES, MARKET, OLD) == 0
    path = lake_dir / "bucket" / "type=trades" / f"date={OLD}" / "part-0.parquet"
    assert pq.read_table(path).num_rows == LakeDay.objects.get(table="trades", day=OLD).rows \
        == rows + 1


def test_a_late_row_for_a_dropped_day_is_served_with_the_lake_rows(lake_dir):
    """A backfilled trade for a dropped day recreates its partition; reads
    merge it with the day's file instead of hiding either."""
    from markets.selectors import trades_page

    record_engine_day(OLD)
    call_command("archive", "--older-than", "2d")
    assert _count(TRADES, MARKET, OLD) == 0
    archived = trades_page(market_ticker=MARKET, limit=10_000)
    late = archived[len(archived) // 2].ts + timedelta(microseconds=1)
    with connection.cursor() as cursor:
        # ingest's staging table empties ON COMMIT, and a test never commits:
        # without this the first load's rows would come again with the late one.
        cursor.execute("TRUNCATE _staging_trades")
    ingest.trades_ingest([(MARKET, late, "late-3", D("0.4200"), D("0.5800"), D("2.25"),
                           "no", None, None, False, late + timedelta(days=3), "rest")])
    assert _count(TRADES, MARKET, OLD) == 1
    served = trades_page(market_ticker=MARKET, limit=10_000)
    assert [t for t in served if t.trade_id != "late-3"] == archived
    assert [t.key for t in served] == sorted(t.key for t in served)
    assert served[len(archived) // 2 + 1].trade_id == "late-3"
    # The late trade's minute bar counts the day file's trades of that minute too.
    minute = late.replace(second=0, microsecond=0)
    same_minute = [t for t in served if minute <= t.ts < minute + timedelta(minutes=1)]
    bar = TradeBar.objects.get(market_ticker=MARKET, minute=minute)
    assert bar.trade_count == len(same_minute) > 1
    assert bar.volume == sum(t.count for t in same_minute)
    assert bar.high == max(t.yes_price for t in same_minute)
    # Pages cut anywhere give the same rows.
    paged, after = [], None
    while page := trades_page(market_ticker=MARKET, after=after, limit=7):
        paged += page
        after = page[-1].key
    assert paged == served


def test_rows_loaded_again_for_a_dropped_day_are_not_stored_twice(lake_dir):
    record_engine_day(OLD)
    call_command("archive", "--older-than", "2d")
    from markets.selectors import deltas_page, trades_page

    archived = trades_page(market_ticker=MARKET, limit=10_000)
    again = [tuple(getattr(t, c) for c in TRADES.columns) for t in archived[:20]]
    assert ingest.trades_ingest(again) == 0
    # A backfill's copy of a trade, stamped a millisecond apart, is the same trade.
    shifted = [(r[0], r[1] + timedelta(milliseconds=1), *r[2:]) for r in again]
    assert ingest.trades_ingest_new_ids(shifted) == 0
    deltas = [tuple(getattr(d, c) for c in DELTAS.columns)
              for d in deltas_page(market_ticker=MARKET, limit=50)]
    assert ingest.deltas_ingest(deltas) == 0
    assert _count(TRADES, MARKET, OLD) == 0 and _count(DELTAS, MARKET, OLD) == 0
    assert trades_page(market_ticker=MARKET, limit=10_000) == archived


def _all_rows(table, market):
    """Every row of a market on OLD, all columns, wherever kept (reads.rows)."""
    from markets.record import reads

    start = datetime(OLD.year, OLD.month, OLD.day, tzinfo=timezone.utc)
    return reads.rows(table, market_ticker=market, columns=table.columns,
                      order=table.replay_order, start=start, end=start + timedelta(days=1),
                      limit=1_000_000)


def test_late_rows_for_a_dropped_day_are_folded_into_its_file(lake_dir, capsys):
    """A late trade and a late snapshot recreate their dropped days'
    partitions: check_storage says the lake's files lack them, and the next
    archive puts the files' rows back, writes the whole days again and drops
    them, so the lake alone (Spark, DuckDB) has every row."""
    record_engine_day(OLD)
    call_command("archive", "--older-than", "2d")
    before = {t: _all_rows(t, MARKET) for t in (TRADES, SNAPSHOTS)}
    other_before = {t: _all_rows(t, OTHER) for t in (TRADES, SNAPSHOTS)}
    with connection.cursor() as cursor:
        # ingest's staging tables empty ON COMMIT, and a test never commits.
        cursor.execute("TRUNCATE _staging_trades, _staging_orderbook_snapshots")
    trade_at = before[TRADES][len(before[TRADES]) // 2][1] + timedelta(microseconds=1)
    late_trade = (MARKET, trade_at, "late-9", D("0.4200"), D("0.5800"), D("2.25"), "no", None,
                  None, False, trade_at + timedelta(days=3), "rest")
    assert ingest.trades_ingest([late_trade]) == 1
    snapshot_at = before[SNAPSHOTS][-1][1] + timedelta(seconds=1)
    late_snapshot = (MARKET, snapshot_at, 0, 0, 0, "rest", [["0.4100", "3.50"]],
                     [["0.1200", "10.00"], ["0.5500", "0.25"]], None)
    assert ingest.snapshots_ingest([late_snapshot]) == 1

    with pytest.raises(CommandError, match="2 with rows not in their file"):
        call_command("check_storage")
    assert f"trades {OLD}: rows landed after it left PostgreSQL" in capsys.readouterr().out

    # The fold alone: the file's rows are back in PostgreSQL, exactly, beside the late ones.
    assert lake.fold_late_rows(SNAPSHOTS, OLD) == LakeDay.objects.get(
        table="snapshots", day=OLD).rows
    assert not LakeDay.objects.get(table="snapshots", day=OLD).dropped_at
    assert _count(SNAPSHOTS, MARKET, OLD) == len(before[SNAPSHOTS]) + 1
    assert _all_rows(SNAPSHOTS, OTHER) == other_before[SNAPSHOTS]

    call_command("archive", "--older-than", "2d")
    out = capsys.readouterr().out
    assert f"trades {OLD}: rows landed after the drop" in out
    for table, late in ((TRADES, late_trade), (SNAPSHOTS, late_snapshot)):
        day = LakeDay.objects.get(table=table.name, day=OLD)
        assert day.verified_at and day.dropped_at and _count(table, MARKET, OLD) == 0
        served = _all_rows(table, MARKET)
        assert [r for r in served if r[1] != late[1]] == before[table]
        (again,) = [r for r in served if r[1] == late[1]]
        assert again == late
        assert _all_rows(table, OTHER) == other_before[table]
        in_file = pq.read_table(lake_dir / day.path).num_rows
        assert in_file == day.rows == len(before[table]) + 1 + len(other_before[table])
    call_command("check_storage")
    assert "late_rows_days=0" in capsys.readouterr().out


def test_a_dropped_days_partition_recreated_empty_is_dropped_again(lake_dir, capsys):
    from markets.partitioning import ensure_partitions

    record_engine_day(OLD)
    call_command("archive", "--older-than", "2d")
    written = LakeDay.objects.get(table="deltas", day=OLD)
    ensure_partitions(DELTAS.stored_model, [OLD])
    assert lake.days_with_late_rows() == [(DELTAS, OLD)]
    call_command("archive", "--older-than", "2d")
    assert "partition was empty and is dropped again" in capsys.readouterr().out
    assert lake.days_with_late_rows() == []
    assert LakeDay.objects.get(table="deltas", day=OLD).written_at == written.written_at
