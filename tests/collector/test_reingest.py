"""Re-ingest: the record of a window rebuilt from the raw archive, repaired exactly, idempotently."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from django.db import connection

from collector.config import CollectorConfig
from collector.pipeline import Pipeline
from collector.raw_archive import RawArchive
from collector.reingest import reingest
from collector.writer import Writer
from markets.objectstore import location_from_url

from . import frames as f

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 24, 11, 59, 50, tzinfo=timezone.utc)
SESSION = 1_764_000_000_000_000
BOOK_SID, TRADE_SID, LIFE_SID = 3, 1, 2
# Every column but the surrogate ids: what "restored exactly" means.
RECORD_TABLES = {
    "orderbook_deltas": "*",
    "orderbook_snapshots": "*",
    "trades": "*",
    "lifecycle_events": "market_ticker, event_ticker, event_type, received_at, ts, session_id, sid, seq, payload",
    "sequence_gaps": ("market_ticker, channel, reason, session_id, sid, expected_seq, received_seq, "
                      "detected_at, recovered_at, tickers_on_sid"),
}


class StepClock:
    def __init__(self, start=T0, step=timedelta(seconds=1)):
        self.now, self.step = start, step

    def __call__(self):
        self.now += self.step
        return self.now


def the_record() -> dict[str, list[tuple]]:
    record = {}
    with connection.cursor() as cursor:
        for table, columns in RECORD_TABLES.items():
            cursor.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2, 3, 4, 5, 6")
            record[table] = [tuple(str(v) for v in row) for row in cursor.fetchall()]
    return record


def execute(sql: str, params=()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def session_frames():
    """Two books, a lost frame (a gap, then a resync snapshot), trades and lifecycle."""
    yield f.subscribed(1, "trade", TRADE_SID)
    yield f.subscribed(1, "market_lifecycle_v2", LIFE_SID)
    yield f.subscribed(2, "orderbook_delta", BOOK_SID)
    yield f.snapshot(BOOK_SID, 1, "MKT-A", yes=[["0.4000", "10.00"]], no=[["0.5000", "5.00"]])
    yield f.snapshot(BOOK_SID, 2, "MKT-B", yes=[["0.2000", "3.00"]], no=[["0.7000", "4.00"]])
    seq = 2
    for i in range(30):
        seq += 1
        ticker = "MKT-A" if i % 3 else "MKT-B"
        yield f.delta(BOOK_SID, seq, ticker, "yes", "0.1000", "1.00" if i % 4 else "2.00")
        if i == 10:
            yield f.trade(TRADE_SID, 1, "MKT-A", "t-1", "0.4000", "3.00", 1_795_521_600_000)
            yield f.lifecycle(LIFE_SID, 1, "MKT-A", "activated")
        if i == 17:
            seq += 1  # this frame is lost: a gap on both books of the sid
    yield f.snapshot(BOOK_SID, seq + 1, "MKT-A", yes=[["0.4000", "12.00"]], no=[["0.5000", "5.00"]])
    yield f.snapshot(BOOK_SID, seq + 2, "MKT-B", yes=[["0.2000", "9.00"]], no=[["0.7000", "4.00"]])
    seq += 2
    for i in range(10):
        seq += 1
        yield f.delta(BOOK_SID, seq, "MKT-A", "no", "0.5000", "1.00")
    yield f.trade(TRADE_SID, 2, "MKT-B", "t-2", "0.2500", "1.00", 1_795_521_630_000)


@pytest.fixture
def recorded(tmp_path):
    """A session recorded as the collector does (archive + writer), plus rows no archive made."""
    cfg = CollectorConfig(journal_dir=tmp_path / "journal", checkpoint_every_deltas=5,
                          raw_archive_url=str(tmp_path / "raw"))
    writer = Writer(cfg)
    writer.archive = RawArchive.from_config(cfg)
    pipeline = Pipeline(writer, cfg, clock=StepClock())
    writer.archive.state = pipeline.state
    pipeline.archive = writer.archive.tap("0")
    pipeline.market_opened("MKT-A", T0 - timedelta(hours=3))  # a session-0 hole
    pipeline.start_session(SESSION)
    pipeline.expect_subscription(2, "orderbook_delta", ["MKT-A", "MKT-B"])
    stamps = []
    for raw in session_frames():
        pipeline.handle(raw)
        stamps.append(pipeline.last_frame_at)
    pipeline.end_session()
    # Rows the archive cannot make: a REST trade, a REST snapshot, a crash hole.
    writer.add_trade(("MKT-A", T0, "rest-1", D("0.3"), D("0.7"), D("1"), "yes", "bid", "yes", False,
                      stamps[20], "rest"))
    writer.add_snapshot(("MKT-B", stamps[20], 0, 0, 0, "rest", [["0.2000", "1.00"]], [], None))
    writer.open_gap(("MKT-A", "orderbook_delta", "crash", 99, None, None, None, stamps[5], None, []))
    writer.flush_sync()
    writer.archive.close()
    return location_from_url(str(tmp_path / "raw")), stamps


def test_an_untouched_record_is_left_as_it_is(recorded):
    location, stamps = recorded
    before = the_record()
    assert len(before["orderbook_deltas"]) == 28 and before["sequence_gaps"]
    report = reingest(location=location, start=T0 - timedelta(hours=4), end=stamps[-1] + timedelta(hours=1))
    assert report.frames == len(stamps)
    assert report.rows_rebuilt["deltas"] == 28
    assert report.changed == 0
    assert the_record() == before


@pytest.mark.parametrize("chunk_rows", [200_000, 4], ids=["hourly", "every-4-rows"])
def test_corrupted_rows_are_restored_exactly_and_a_second_run_changes_nothing(recorded, chunk_rows,
                                                                              monkeypatch):
    """Also when the rows are compared a few at a time (the memory bound), not per hour."""
    monkeypatch.setattr("collector.reingest.CHUNK_ROWS", chunk_rows)
    location, stamps = recorded
    before = the_record()
    # Changed values, deleted rows, extra rows, in every table the archive makes.
    assert execute("UPDATE orderbook_delta_rows SET delta = delta + 7 WHERE received_at = %s", [stamps[8]]) == 1
    assert execute("DELETE FROM orderbook_delta_rows WHERE received_at = %s", [stamps[9]]) == 1
    execute("INSERT INTO orderbook_delta_rows SELECT received_at + interval '1 microsecond', "
            "session_id, seq + 1000, delta, ts, market_id, sid, price, side FROM orderbook_delta_rows "
            "WHERE received_at = %s", [stamps[12]])
    assert execute("DELETE FROM orderbook_snapshots WHERE source = 'resync' AND market_ticker = 'MKT-B'") == 1
    assert execute("UPDATE orderbook_snapshots SET yes_levels = '[]' WHERE source = 'checkpoint' "
                   "AND received_at = (SELECT min(received_at) FROM orderbook_snapshots "
                   "WHERE source = 'checkpoint')") == 1
    assert execute("UPDATE trades SET count = 99 WHERE trade_id = 't-1'") == 1
    assert execute("DELETE FROM trades WHERE trade_id = 't-2'") == 1
    execute("INSERT INTO trades SELECT market_ticker, ts + interval '1 second', 'fake', yes_price, "
            "no_price, count, taker_outcome_side, taker_book_side, taker_side, is_block_trade, "
            "received_at, source FROM trades WHERE trade_id = 't-1'")
    assert execute("UPDATE lifecycle_events SET payload = '{}'") == 1
    assert execute("UPDATE sequence_gaps SET recovered_at = NULL WHERE reason = 'seq_gap' "
                   "AND market_ticker = 'MKT-A'") == 1
    assert execute("DELETE FROM sequence_gaps WHERE reason = 'seq_gap' AND market_ticker = 'MKT-B'") == 1
    assert execute("UPDATE sequence_gaps SET reason = 'malformed' WHERE reason = 'disconnect' "
                   "AND market_ticker = 'MKT-B'") == 1
    execute("INSERT INTO sequence_gaps (market_ticker, channel, reason, session_id, detected_at, "
            "tickers_on_sid) VALUES ('MKT-A', 'orderbook_delta', 'seq_gap', %s, %s, '{}')",
            [SESSION, stamps[3]])
    assert the_record() != before

    window = dict(location=location, start=T0 - timedelta(hours=4), end=stamps[-1] + timedelta(hours=1))
    report = reingest(**window)
    assert the_record() == before
    assert report.changed > 0
    assert report.deleted["trades"] == 2 and report.inserted["trades"] == 2
    assert reingest(**window).changed == 0
    assert the_record() == before


def test_a_window_inside_a_session_for_one_market_repairs_only_that(recorded):
    """The books at the window's start come from the session's earlier frames."""
    location, stamps = recorded
    before = the_record()
    # The window begins after the resync snapshots: MKT-A's last deltas apply to a
    # book (and a sid sequence) that only the frames before the window can rebuild.
    (start,) = first_row("SELECT max(received_at) FROM orderbook_snapshots WHERE source = 'resync'")
    (a_in,) = first_row("SELECT max(received_at) FROM orderbook_deltas WHERE market_ticker = 'MKT-A'")
    (a_before,) = first_row("SELECT min(received_at) FROM orderbook_deltas WHERE market_ticker = 'MKT-A'")
    execute("UPDATE orderbook_delta_rows SET delta = delta + 1 WHERE received_at IN (%s, %s)", [a_in, a_before])
    execute("UPDATE orderbook_snapshots SET yes_levels = '[]' WHERE received_at = %s", [start])  # MKT-B
    report = reingest(location=location, start=start, end=stamps[-1] + timedelta(seconds=1),
                      markets=["MKT-A"])
    assert report.frames == len(stamps)  # replayed from the session's start
    assert (report.deleted["deltas"], report.inserted["deltas"], report.changed) == (1, 1, 2)
    after = the_record()
    assert rows_at(after, "orderbook_deltas", a_in) == rows_at(before, "orderbook_deltas", a_in)
    # Outside the window, and another market: left alone.
    assert rows_at(after, "orderbook_deltas", a_before) != rows_at(before, "orderbook_deltas", a_before)
    assert rows_at(after, "orderbook_snapshots", start) != rows_at(before, "orderbook_snapshots", start)


def first_row(sql: str):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def rows_at(record, table, stamp):
    return [row for row in record[table] if row[1] == str(stamp)]


def test_a_session_with_an_hour_missing_from_the_archive_is_left_alone_after_it(tmp_path):
    """A sequence cannot be followed over a hole in the archive: the rows after it stay as stored."""
    cfg = CollectorConfig(journal_dir=tmp_path / "journal", raw_archive_url=str(tmp_path / "raw"))
    writer = Writer(cfg)
    writer.archive = RawArchive.from_config(cfg)
    pipeline = Pipeline(writer, cfg, clock=StepClock(step=timedelta(minutes=20)))
    writer.archive.state = pipeline.state
    pipeline.archive = writer.archive.tap("0")
    pipeline.start_session(SESSION)
    stamps = []
    for raw in session_frames():  # 20 minutes a frame: hours 12 .. 26
        pipeline.handle(raw)
        stamps.append(pipeline.last_frame_at)
    writer.flush_sync()
    writer.archive.close()
    root = tmp_path / "raw"
    lost = stamps[9].replace(minute=0, second=0, microsecond=0)
    (root / f"date={lost:%Y-%m-%d}" / f"hour={lost:%H}").rename(tmp_path / "lost-hour")
    early, late = stamps[4], stamps[-1]  # a snapshot before the lost hour; a trade after it
    before = the_record()
    assert execute("UPDATE orderbook_snapshots SET yes_levels = '[]' WHERE received_at = %s", [early]) == 1
    assert execute("UPDATE trades SET count = 5 WHERE received_at = %s", [late]) == 1
    damaged = the_record()

    report = reingest(location=location_from_url(str(root)), start=T0, end=late + timedelta(hours=1))
    after = the_record()
    assert report.skipped > 0
    assert rows_at(after, "orderbook_snapshots", early) == rows_at(before, "orderbook_snapshots", early)
    # After the hole: nothing deleted or rewritten, the damaged trade included.
    assert after["trades"] == damaged["trades"]
    assert after["orderbook_deltas"] == before["orderbook_deltas"]


def test_the_command_reports_what_it_rebuilt_and_changed(recorded):
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    location, stamps = recorded
    execute("DELETE FROM orderbook_delta_rows WHERE received_at = %s", [stamps[8]])
    args = ["--start", (T0 - timedelta(hours=4)).isoformat(), "--end", (stamps[-1] + timedelta(hours=1)).isoformat(),
            "--archive", location.url, "--no-progress"]
    out = io.StringIO()
    call_command("reingest", *args, stdout=out)
    assert "deltas: rebuilt 28, deleted 0, inserted 1" in out.getvalue()
    assert "changed 1 rows" in out.getvalue()
    out = io.StringIO()
    call_command("reingest", *args, "--markets", "MKT-A,MKT-B", stdout=out)
    assert "changed nothing" in out.getvalue()
    with pytest.raises(CommandError, match="--end"):
        call_command("reingest", "--start", "2026-11-24T12:00Z", "--end", "2026-11-24T11:00Z")


def test_a_replay_that_begins_at_a_later_hour_gives_every_row_its_own_stamp(tmp_path):
    """The window's sessions began in a later hour than the collector: the replay
    starts from that hour's header, and the gap the session's first frame reveals
    (it begins just after the session's start) comes out with its stored key."""
    cfg = CollectorConfig(journal_dir=tmp_path / "journal", raw_archive_url=str(tmp_path / "raw"))
    writer = Writer(cfg)
    writer.archive = RawArchive.from_config(cfg)
    clock = StepClock()
    pipeline = Pipeline(writer, cfg, clock=clock)
    writer.archive.state = pipeline.state
    pipeline.archive = writer.archive.tap("0")
    pipeline.start_session(SESSION)
    for raw in list(session_frames())[:10]:
        pipeline.handle(raw)
    pipeline.end_session()
    clock.now = T0 + timedelta(hours=2, minutes=30)  # a reconnect, two hours later
    pipeline.start_session(SESSION + 1)
    # The first frame: a delta whose snapshot was lost, a hole from the session's start.
    pipeline.handle(f.delta(9, 2, "MKT-A", "yes", "0.1000", "1.00"))
    pipeline.handle(f.snapshot(9, 3, "MKT-A", yes=[["0.4000", "10.00"]], no=[]))
    for seq in range(4, 9):
        pipeline.handle(f.delta(9, seq, "MKT-A", "yes", "0.3000", "1.00"))
    writer.flush_sync()
    writer.archive.close()
    before = the_record()
    assert [g for g in before["sequence_gaps"] if g[3] == str(SESSION + 1) and g[2] == "seq_gap"]

    report = reingest(location=location_from_url(str(tmp_path / "raw")),
                      start=T0 + timedelta(hours=2, minutes=30), end=T0 + timedelta(hours=4))
    assert report.frames == 7 and report.rows_rebuilt["deltas"] == 5
    assert report.changed == 0, (report.deleted, report.inserted)
    assert the_record() == before


def test_a_packed_day_is_left_as_it_is_and_a_corrupted_packed_delta_restored(recorded):
    """Deltas in chunks (markets/record/packs.py) are compared, deleted and stored like loose ones."""
    from markets.partitioning import pack_closed_days
    from markets.record import packs

    location, stamps = recorded
    before = the_record()
    pack_closed_days(today=T0.date() + timedelta(days=1))
    assert execute("SELECT 1 FROM orderbook_delta_rows") == 0
    assert execute(f"SELECT 1 FROM {packs.TABLE}") > 0
    window = dict(location=location, start=T0 - timedelta(hours=4),
                  end=stamps[-1] + timedelta(hours=1))
    assert reingest(**window).changed == 0
    assert the_record() == before
    assert execute(f"UPDATE {packs.TABLE} SET delta[1] = delta[1] + 7 "
                   f"WHERE first_at = (SELECT min(first_at) FROM {packs.TABLE})") == 1
    assert the_record() != before
    assert reingest(**window).changed > 0
    assert the_record() == before
    assert reingest(**window).changed == 0
