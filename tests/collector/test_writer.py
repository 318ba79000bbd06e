"""The writer: batches by size and time, and loses nothing when PostgreSQL goes away.

The outage tests take the database away for real: the writer talks to
PostgreSQL through a pass-through socket (tests/collector/pgproxy.py) that
is switched off, which cuts its open connection and refuses new ones, then
switched on again.
"""

import asyncio
import shutil
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from django.db import connection

from collector.config import CollectorConfig
from collector.pipeline import Pipeline
from collector.writer import Writer
from markets.models import LifecycleEvent, OrderbookDelta, OrderbookSnapshot, SequenceGap, Trade

from . import frames as f
from .pgproxy import PostgresProxy

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)


@pytest.fixture
def proxy():
    """Route every new database connection through a switchable proxy."""
    settings = connection.settings_dict  # shared by every thread's connection
    proxy = PostgresProxy(settings["HOST"], settings["PORT"])
    proxy.start()
    old_host = settings["HOST"]
    settings["HOST"] = proxy.dir
    try:
        yield proxy
    finally:
        connection.close()  # it may have gone through the proxy
        settings["HOST"] = old_host
        proxy.close()


async def until(condition, what, timeout=60.0):
    """Wait (without blocking the loop) until `condition()`; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Feed:
    """A stream of numbered frames on one order-book sid plus trades."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.seq = 0
        self.trade_seq = 0
        self.at = T0
        self.deltas = 0

    def send(self, raw):
        self.at += timedelta(milliseconds=1)
        return self.pipeline.handle(raw, self.at)

    def start(self):
        self.pipeline.expect_subscription(1, "orderbook_delta", ("A",))
        self.send(f.subscribed(1, "orderbook_delta", 2))
        self.send(f.subscribed(2, "trade", 3))
        self.seq += 1
        self.send(f.snapshot(2, self.seq, "A", yes=[["0.5000", "10.00"]]))

    def deltas_and_trades(self, n):
        for i in range(n):
            self.seq += 1
            self.send(f.delta(2, self.seq, "A", "yes", f"0.{10 + i % 80:02d}00", "1.00"))
            self.deltas += 1
            if i % 10 == 0:
                self.trade_seq += 1
                ms = int(self.at.timestamp() * 1000)
                self.send(f.trade(3, self.trade_seq, "A", f"t{self.trade_seq}", "0.5000", "1.00", ms))

    def gap_then_resync(self):
        self.seq += 5  # lose four frames
        self.send(f.delta(2, self.seq, "A", "yes", "0.5000", "1.00"))  # dropped
        self.seq += 1
        self.send(f.snapshot(2, self.seq, "A", yes=[["0.5000", "3.00"]], cmd_id=7))


def assert_stored_exactly_once(feed, pipeline):
    assert OrderbookDelta.objects.count() == feed.deltas
    assert OrderbookDelta.objects.values("seq").distinct().count() == feed.deltas
    assert Trade.objects.count() == feed.trade_seq
    assert OrderbookSnapshot.objects.filter(source__in=["subscribe", "resync"]).count() == \
        pipeline.counters["snapshots"]
    gap = SequenceGap.objects.get()
    assert gap.recovered_at is not None


@pytest.mark.django_db(transaction=True)
def test_batches_by_size_and_by_time(tmp_path):
    async def scenario():
        cfg = CollectorConfig(journal_dir=tmp_path, flush_rows=100, flush_seconds=0.2)
        writer = Writer(cfg)
        pipeline = Pipeline(writer, cfg)
        feed = Feed(pipeline)
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        feed.start()
        feed.deltas_and_trades(450)  # well past flush_rows: written without waiting
        await until(lambda: writer.counters["batches_written"] >= 1, "a size flush")
        await until(lambda: writer.pending_rows == 0, "the time flush of the rest")
        written = writer.counters["rows_written"]
        feed.deltas_and_trades(3)  # a few rows: written by age
        await until(lambda: writer.counters["rows_written"] > written, "an age flush")
        stop.set()
        await task
        return feed, pipeline, writer

    feed, pipeline, writer = asyncio.run(scenario())
    assert OrderbookDelta.objects.count() == feed.deltas == 453
    assert writer.counters["batches_journaled"] == 0
    assert writer.stats()["rows_pending"] == 0


@pytest.mark.django_db(transaction=True)
def test_postgres_down_mid_run_then_back_loses_nothing(tmp_path, proxy):
    async def scenario():
        cfg = CollectorConfig(
            journal_dir=tmp_path, flush_rows=50, flush_seconds=0.05,
            db_retry_initial=0.05, db_retry_max=0.2,
        )
        writer = Writer(cfg)
        pipeline = Pipeline(writer, cfg)
        feed = Feed(pipeline)
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))

        feed.start()
        feed.deltas_and_trades(200)
        await until(lambda: writer.pending_rows == 0 and writer.counters["rows_written"] > 0,
                    "the first rows in PostgreSQL")

        proxy.stop()  # PostgreSQL is gone: open connection cut, new ones refused
        for _ in range(3):
            feed.deltas_and_trades(100)
            await until(lambda: writer.pending_rows == 0, "a batch taken during the outage")
        feed.gap_then_resync()  # gap rows opened and closed while the DB is away
        feed.deltas_and_trades(100)
        await until(lambda: writer.pending_rows == 0 and writer.journal.count >= 2,
                    "batches journaled during the outage")
        assert writer.counters["db_failures"] >= 1
        journaled = writer.journal.count

        proxy.start()
        feed.deltas_and_trades(100)
        await until(lambda: writer.journal.count == 0 and writer.pending_rows == 0,
                    "the journal loaded")
        stop.set()
        await task
        return feed, pipeline, writer, journaled

    feed, pipeline, writer, journaled = asyncio.run(scenario())
    connection.close()  # this thread's connection was cut with the others
    assert journaled >= 2
    assert writer.counters["batches_replayed"] >= journaled
    assert_stored_exactly_once(feed, pipeline)
    assert list((tmp_path).glob("*.batch")) == []


@pytest.mark.django_db(transaction=True)
def test_a_journal_left_by_a_stopped_collector_is_loaded_once(tmp_path, proxy):
    """Collector 1 runs and stops while the database is down; collector 2
    finds its journal and loads it; loading the same files again stores
    nothing twice and keeps gap closes after their opens."""

    async def first_run():
        cfg = CollectorConfig(journal_dir=tmp_path, flush_rows=40, flush_seconds=0.05,
                              db_retry_initial=0.05, db_retry_max=0.1)
        writer = Writer(cfg)
        pipeline = Pipeline(writer, cfg)
        feed = Feed(pipeline)
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        proxy.stop()
        feed.start()
        feed.deltas_and_trades(120)
        await until(lambda: writer.journal.count >= 1, "a batch journaled")
        feed.gap_then_resync()
        await until(lambda: writer.journal.count >= 2, "a second batch journaled")
        feed.deltas_and_trades(70)
        pipeline.end_session()
        stop.set()
        await task  # close(): the database is still down, so all to the journal
        return feed, pipeline, writer

    feed, pipeline, writer = asyncio.run(first_run())
    connection.close()  # this thread's connection was cut with the others
    assert writer.pending_rows == 0
    files = sorted(tmp_path.glob("*.batch"))
    assert len(files) >= 3
    copies = tmp_path / "copies"
    copies.mkdir()
    for path in files:
        shutil.copy(path, copies / path.name)

    proxy.start()
    assert OrderbookDelta.objects.count() == 0
    second = Writer(CollectorConfig(journal_dir=tmp_path))
    second.flush_sync()
    assert second.journal.count == 0
    counts = (OrderbookDelta.objects.count(), Trade.objects.count(),
              OrderbookSnapshot.objects.count(), SequenceGap.objects.count())
    assert counts[0] == feed.deltas and counts[1] == feed.trade_seq

    # As if the collector had died between committing and deleting the files.
    for path in copies.iterdir():
        shutil.copy(path, tmp_path / path.name)
    third = Writer(CollectorConfig(journal_dir=tmp_path))
    third.flush_sync()
    assert third.journal.count == 0
    assert counts == (OrderbookDelta.objects.count(), Trade.objects.count(),
                      OrderbookSnapshot.objects.count(), SequenceGap.objects.count())
    seq_gap = SequenceGap.objects.get(reason="seq_gap")
    assert seq_gap.recovered_at is not None
    # end_session recorded a disconnect gap; nothing re-baselined it since.
    assert SequenceGap.objects.get(reason="disconnect", market_ticker="A").recovered_at is None


@pytest.mark.django_db
def test_rows_beyond_the_memory_bound_spill_to_the_journal_in_order(tmp_path):
    cfg = CollectorConfig(journal_dir=tmp_path, flush_rows=10, max_buffered_rows=100)
    writer = Writer(cfg)
    pipeline = Pipeline(writer, cfg)
    feed = Feed(pipeline)
    feed.start()
    feed.deltas_and_trades(150)
    feed.gap_then_resync()
    feed.deltas_and_trades(100)
    # Nobody flushed: memory stayed bounded by spilling.
    assert writer.pending_rows < 100
    assert writer.counters["spills"] >= 2 and writer.journal.count >= 2
    writer.flush_sync()
    assert writer.journal.count == 0 and writer.pending_rows == 0
    assert_stored_exactly_once(feed, pipeline)


@pytest.mark.django_db(transaction=True)
def test_a_batch_postgres_refuses_is_kept_aside_and_the_rest_is_written(tmp_path):
    writer = Writer(CollectorConfig(journal_dir=tmp_path))
    at = T0
    # 10^7 dollars does not fit NUMERIC(10, 4): PostgreSQL refuses the batch.
    writer.add_delta(("A", at, 1, 2, 1, "yes", D("10000000.0000"), D("1.00"), None))
    writer.flush_sync()
    writer.add_delta(("A", at + timedelta(seconds=1), 1, 2, 2, "yes", D("0.5000"), D("1.00"), None))
    writer.add_lifecycle(("A", "E", "created", at, None, 1, 4, 1, {"market_ticker": "A"}))
    writer.flush_sync()
    assert writer.counters["batches_rejected"] == 1
    rejected = list((tmp_path / "rejected").glob("*.batch"))
    assert len(rejected) == 1
    assert "numeric" in rejected[0].with_suffix(".error").read_text().lower()
    assert list(OrderbookDelta.objects.values_list("seq", flat=True)) == [2]
    assert LifecycleEvent.objects.get().payload == {"market_ticker": "A"}


@pytest.mark.django_db
def test_a_live_batch_holding_stored_rows_falls_back_to_the_idempotent_load(tmp_path):
    writer = Writer(CollectorConfig(journal_dir=tmp_path))
    row = ("A", T0, 1, 2, 1, "yes", D("0.5000"), D("1.00"), None)
    snap = ("A", T0, 1, 2, 1, "subscribe", [["0.5000", "1.00"]], [], None)
    writer.add_delta(row)
    writer.add_snapshot(snap)
    writer.flush_sync()
    writer.add_delta(row)  # e.g. a second collector stamping the same key
    writer.add_delta(("A", T0 + timedelta(seconds=1), 1, 2, 2, "yes", D("0.5000"), D("1.00"), None))
    writer.add_snapshot(snap)
    writer.flush_sync()
    assert list(OrderbookDelta.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2]
    assert OrderbookSnapshot.objects.count() == 1
    assert writer.counters["batches_rejected"] == 0 and writer.journal.count == 0
