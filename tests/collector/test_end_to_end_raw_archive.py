"""End to end: the raw archive of a real collector session, kill -9, and re-ingest from it.

The collector records the simulator over several connections; its raw
archive must hold every frame it received, with the very stamps its rows
carry, and re-ingesting the run from the archive must change nothing, then
restore exactly a record damaged on purpose. A `manage.py collect` process
killed with SIGKILL must leave in its archive the frames of every row that
was durable (in PostgreSQL or in its journal).
"""

import asyncio
import dataclasses
import shutil
import signal
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.db import connection

from collector.raw_archive import ReadStats, archive_files, frame_text, read_records
from collector.reingest import reingest
from collector.writer import Journal
from markets.objectstore import location_from_url
from simulator import Simulator

from .e2e import collector_config, finish_run, start_run
from .test_end_to_end_crash import Collect
from .test_end_to_end_db_outage import ROOT, Postgres, collector_env, run, wait_for
from .test_reingest import execute, the_record

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def archived_frames(root: Path, stats: ReadStats | None = None) -> list[dict]:
    location = location_from_url(str(root))
    now = datetime.now(timezone.utc)
    files = archive_files(location, now - timedelta(days=1), now + timedelta(days=1))
    return [r for hour in sorted(files) for relative, _ in files[hour]
            for r in read_records(location, relative, stats) if r["k"] == "f"]


def _us(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


@pytest.mark.django_db(transaction=True)
async def test_the_archive_holds_every_frame_and_reingest_restores_a_damaged_record(tmp_path):
    sim = Simulator(seed=21, markets=9, rate=200)
    await sim.start(host="127.0.0.1", port=0)
    try:
        # Several connections, each with its own sessions, sharing one archive.
        config = collector_config(tmp_path, max_markets_per_connection=4)
        recording = await start_run(sim, config)
        await asyncio.sleep(2.0)
        await finish_run(recording)
    finally:
        await sim.stop()
    feeds = recording.collector.connections.feeds
    assert len(feeds) >= 2

    frames = archived_frames(tmp_path / "raw")
    assert len(frames) == sum(feed.frames for feed in feeds) > 100
    stamps = {(r["at"], r["s"]) for r in frames}
    assert len(stamps) == len(frames)  # strictly increasing stamps: one frame each
    assert sum('"orderbook_delta"' in frame_text(r) for r in frames) > 50

    def check_and_damage():
        with connection.cursor() as cursor:
            cursor.execute("SELECT received_at, session_id FROM orderbook_deltas "
                           "UNION ALL SELECT received_at, session_id FROM orderbook_snapshots "
                           "WHERE source <> 'rest'")
            rows = cursor.fetchall()
        assert rows and all((_us(at), session) in stamps for at, session in rows)
        start = min(at for at, _ in rows) - timedelta(minutes=5)
        end = max(at for at, _ in rows) + timedelta(minutes=5)
        before = the_record()
        window = dict(location=location_from_url(str(tmp_path / "raw")), start=start, end=end)
        untouched = reingest(**window)
        assert untouched.changed == 0 and the_record() == before
        assert untouched.rows_rebuilt["deltas"] == len(before["orderbook_deltas"])

        execute("UPDATE orderbook_delta_rows SET delta = delta * 2 WHERE received_at IN "
                "(SELECT received_at FROM orderbook_delta_rows ORDER BY received_at LIMIT 5)")
        execute("DELETE FROM orderbook_delta_rows WHERE received_at IN "
                "(SELECT received_at FROM orderbook_delta_rows ORDER BY received_at DESC LIMIT 5)")
        execute("DELETE FROM orderbook_snapshots WHERE source = 'checkpoint' AND received_at IN "
                "(SELECT received_at FROM orderbook_snapshots WHERE source = 'checkpoint' LIMIT 3)")
        execute("UPDATE trades SET yes_price = 0.01 WHERE source = 'ws' AND trade_id IN "
                "(SELECT trade_id FROM trades WHERE source = 'ws' LIMIT 2)")
        execute("INSERT INTO orderbook_delta_rows SELECT received_at + interval '1 microsecond', "
                "session_id, seq + 100000, delta, ts, market_id, sid, price, side FROM orderbook_delta_rows "
                "ORDER BY received_at LIMIT 3")
        execute("DELETE FROM sequence_gaps WHERE reason = 'disconnect'")
        assert the_record() != before
        repaired = reingest(**window)
        assert repaired.changed > 0
        assert the_record() == before
        assert reingest(**window).changed == 0

    def in_thread():
        try:
            check_and_damage()
        finally:
            connection.close()  # this thread's own connection

    await asyncio.to_thread(in_thread)


@pytest.mark.django_db(transaction=True)
async def test_reingest_of_a_hostile_run_reproduces_its_record_exactly(tmp_path):
    """Gaps, duplicates, malformed frames, terminal errors, reconnects and refused
    subscriptions, over several connections: the replay makes every row again."""
    from .test_end_to_end_hostile import hostile_collector, hostile_config, settle

    config = hostile_config(seed=5)
    # Reconnects and terminal errors within a short run, too.
    sim = Simulator(dataclasses.replace(
        config, faults=dataclasses.replace(config.faults, disconnect_every_frames=300,
                                           terminal_error_rate=0.005)))
    await sim.start(host="127.0.0.1", port=0)
    try:
        recording = await start_run(sim, hostile_collector(tmp_path))
        await asyncio.sleep(6.0)
        await settle(recording)
    finally:
        await sim.stop()
    final = recording.final
    assert final["gaps"] > 0 and final["duplicates"] > 0 and final["malformed"] > 0
    assert final["reconnects"] > 0 and final["connections"] >= 2
    assert sum(v for k, v in final.items() if k.startswith("error_")) > 0  # terminal errors

    def reingest_untouched():
        try:
            before = the_record()
            now = datetime.now(timezone.utc)
            report = reingest(location=location_from_url(str(tmp_path / "raw")),
                              start=now - timedelta(hours=1), end=now + timedelta(minutes=1))
            return before, report, the_record()
        finally:
            connection.close()

    before, report, after = await asyncio.to_thread(reingest_untouched)
    assert report.frames > 1000 and sum(report.rows_rebuilt.values()) > 1000
    assert report.changed == 0, (report.deleted, report.inserted)
    assert after == before


async def test_kill_9_leaves_the_frames_of_every_durable_row_in_the_archive(tmp_path):
    pgdata = ROOT / "var" / f"test-raw-{uuid.uuid4().hex[:8]}"
    pgdata.parent.mkdir(exist_ok=True)
    pg = await asyncio.to_thread(Postgres, pgdata)
    sim = Simulator(seed=47, markets=6, rate=300)
    collect = None
    try:
        urls = await sim.start(host="127.0.0.1", port=0)
        env = collector_env(pg, sim, urls, tmp_path, raw_archive_url=str(tmp_path / "raw"))
        await run("manage.py", "migrate", "--no-input", env=env)
        await run("manage.py", "pgpartition", "--yes", env=env)
        collect = Collect(env)
        await collect.start()

        async def recording():
            collect.check_alive()
            rows = await asyncio.to_thread(pg.query, "SELECT count(*) FROM orderbook_deltas")
            return rows[0][0] > 200

        await wait_for(recording, "deltas in PostgreSQL")
        collect.proc.send_signal(signal.SIGKILL)
        assert await collect.wait() == -signal.SIGKILL

        stored = await asyncio.to_thread(
            pg.query, "SELECT received_at, session_id FROM orderbook_deltas UNION ALL "
                      "SELECT received_at, session_id FROM orderbook_snapshots")
        journal = Journal(tmp_path / "journal")
        for no in journal.numbers():
            batch = journal.read(no)
            for table in ("deltas", "snapshots"):
                stored.extend((row[1], row[2]) for row in batch.tables.get(table, ()))
        stats = ReadStats()
        frames = archived_frames(tmp_path / "raw", stats)
        stamps = {(r["at"], r["s"]) for r in frames}
        missing = [row for row in stored if (_us(row[0]), row[1]) not in stamps]
        assert len(stored) > 200 and not missing, missing[:5]

        # The archive the kill left (its last block possibly cut short) re-ingests:
        # rows only the journal held come back from it, and a second run changes nothing.
        first, last = min(r[0] for r in stored), max(r[0] for r in stored)
        window = ["--start", (first - timedelta(hours=1)).isoformat(),
                  "--end", (last + timedelta(hours=1)).isoformat(), "--no-progress"]
        await run("manage.py", "reingest", *window, env=env)
        in_db = await asyncio.to_thread(
            pg.query, "SELECT received_at, session_id FROM orderbook_deltas UNION ALL "
                      "SELECT received_at, session_id FROM orderbook_snapshots")
        assert set(stored) <= set(in_db)
        assert "changed nothing" in await run("manage.py", "reingest", *window, env=env)
    finally:
        if collect is not None and collect.proc is not None and collect.proc.returncode is None:
            collect.proc.kill()
            await collect.proc.wait()
        await sim.stop()
        try:
            await asyncio.to_thread(pg.stop)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(pgdata, ignore_errors=True)
