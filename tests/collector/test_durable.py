"""Crash safety, the writer's failures and the trade-hole retry queue, without the network.

The journal's disk refusing writes is simulated by making `Journal.write`
raise ENOSPC / EROFS (the tests run as root, for whom a read-only mode bit
refuses nothing, and no tiny tmpfs can be mounted here); PostgreSQL is taken
away for real through the switchable proxy of test_writer.py.
"""

import asyncio
import errno
import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection

from collector import backfill, runs
from collector.backfill import BackfillQueue
from collector.config import CollectorConfig
from collector.db import run_db
from collector.pipeline import Pipeline
from collector.rest import KalshiRestError
from collector.writer import Journal, Writer, WriterFailure
from markets import ingest
from markets.models import CollectorRun, OrderbookDelta, SequenceGap, Trade, TradeBackfill

from .test_writer import Feed, proxy, until  # noqa: F401 - proxy is a fixture

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)


def refusing(code):
    def write(self, batch):
        raise OSError(code, "simulated: " + errno.errorcode[code])
    return write


# --- the writer never dies silently -----------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_journal_that_refuses_writes_is_logged_loudly_and_rows_still_reach_postgres(
        tmp_path, monkeypatch, caplog, code):
    monkeypatch.setattr(Journal, "write", refusing(code))
    cfg = CollectorConfig(journal_dir=tmp_path, flush_rows=50, flush_seconds=0.05)

    async def scenario():
        writer = Writer(cfg)
        feed = Feed(Pipeline(writer, cfg))
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        feed.start()
        feed.deltas_and_trades(200)
        await until(lambda: writer.pending_rows == 0 and writer.counters["rows_written"] > 0, "writes")
        stop.set()
        await task
        return feed, writer

    with caplog.at_level(logging.CRITICAL, logger="collector.writer"):
        feed, writer = asyncio.run(scenario())
    assert OrderbookDelta.objects.count() == feed.deltas
    assert writer.counters["journal_failures"] > 0
    assert any("JOURNAL WRITE FAILED" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_journal_full_while_postgres_is_away_stops_the_writer_loudly(tmp_path, monkeypatch, proxy, caplog):
    monkeypatch.setattr(Journal, "write", refusing(errno.ENOSPC))
    cfg = CollectorConfig(journal_dir=tmp_path, flush_rows=50, flush_seconds=0.05,
                          db_retry_initial=0.05, db_retry_max=0.1, writer_failure_exit_s=0.5)

    async def scenario():
        writer = Writer(cfg)
        feed = Feed(Pipeline(writer, cfg))
        stop = asyncio.Event()
        proxy.stop()
        task = asyncio.create_task(writer.run(stop))
        feed.start()
        feed.deltas_and_trades(100)
        with pytest.raises(WriterFailure):
            await asyncio.wait_for(task, 30)
        return writer

    with caplog.at_level(logging.CRITICAL, logger="collector.writer"):
        writer = asyncio.run(scenario())
    connection.close()
    assert writer.stranded_rows > 0
    assert any("giving up" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_rows_held_in_memory_are_written_when_postgres_returns_in_time(tmp_path, monkeypatch, proxy):
    monkeypatch.setattr(Journal, "write", refusing(errno.ENOSPC))
    cfg = CollectorConfig(journal_dir=tmp_path, flush_rows=50, flush_seconds=0.05,
                          db_retry_initial=0.05, db_retry_max=0.1, writer_failure_exit_s=60)

    async def scenario():
        writer = Writer(cfg)
        feed = Feed(Pipeline(writer, cfg))
        stop = asyncio.Event()
        proxy.stop()
        task = asyncio.create_task(writer.run(stop))
        feed.start()
        feed.deltas_and_trades(100)
        await until(lambda: writer.stranded_rows > 0, "rows held in memory")
        proxy.start()
        await until(lambda: writer.stranded_rows == 0 and writer.pending_rows == 0, "rows written")
        stop.set()
        await task
        return feed

    feed = asyncio.run(scenario())
    connection.close()
    assert OrderbookDelta.objects.count() == feed.deltas
    assert Trade.objects.count() == feed.trade_seq


# --- crash safety ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_start_after_an_unclean_stop_records_a_crash_hole_for_every_market(tmp_path):
    cfg = CollectorConfig(journal_dir=tmp_path, use_yes_price=False)
    first = Writer(cfg)
    run1 = runs.run_begin(cfg, first, now=T0)
    first.flush_sync()  # the first batch (start op, watermark) is durable
    runs.run_beat(run1, first, {"A", "B"})
    first.flush_sync()  # the markets op reaches the table
    runs.run_beat(run1, first, {"A", "B"})  # the state file holds the watermark
    watermark = first.durable_at
    assert watermark is not None
    # ... and the process is killed: no run_end.

    second = Writer(cfg)
    run2 = runs.run_begin(cfg, second, now=T0 + timedelta(minutes=5))
    second.flush_sync()
    assert run2.crash is not None and run2.crash.run_id == run1.run_id
    gaps = {(g.market_ticker, g.channel): g for g in SequenceGap.objects.filter(reason="crash")}
    assert set(gaps) == {("A", "orderbook_delta"), ("B", "orderbook_delta"), ("", "trade")}
    assert all(g.detected_at == watermark and g.recovered_at is None for g in gaps.values())
    assert run2.crash_trade_gaps == [("", "trade", run1.run_id, watermark)]
    rows = {r.id: r for r in CollectorRun.objects.all()}
    assert rows[run1.run_id].clean is False and rows[run1.run_id].markets == ["A", "B"]
    assert rows[run1.run_id].durable_at == watermark
    assert rows[run2.run_id].recovered_from == run1.run_id
    assert rows[run2.run_id].flags == {"use_yes_price": False}

    # A clean stop of run 2: the next start records nothing.
    second.add_run_op(runs.op_stop(run2.run_id, T0 + timedelta(minutes=6), True, "stopped"))
    second.flush_sync()
    runs.run_end(run2, second, {"A"}, clean=True)
    third = Writer(cfg)
    run3 = runs.run_begin(cfg, third, now=T0 + timedelta(minutes=7))
    third.flush_sync()
    assert run3.crash is None
    assert SequenceGap.objects.filter(reason="crash").count() == 3
    assert CollectorRun.objects.get(id=run2.run_id).clean is True


@pytest.mark.django_db(transaction=True)
def test_a_crash_before_anything_was_durable_keeps_the_previous_crash_window(tmp_path):
    cfg = CollectorConfig(journal_dir=tmp_path)
    first = Writer(cfg)
    run1 = runs.run_begin(cfg, first, now=T0)
    first.flush_sync()
    runs.run_beat(run1, first, {"A"})
    watermark = first.durable_at
    # Run 2 starts, records the crash, and dies before writing anything.
    runs.run_begin(cfg, Writer(cfg), now=T0 + timedelta(minutes=1))
    third = Writer(cfg)
    run3 = runs.run_begin(cfg, third, now=T0 + timedelta(minutes=2))
    assert run3.crash.since == watermark and run3.crash.markets == ["A"]


@pytest.mark.django_db(transaction=True)
def test_a_writer_that_gave_up_is_recorded_as_a_writer_failure_hole(tmp_path):
    cfg = CollectorConfig(journal_dir=tmp_path)
    first = Writer(cfg)
    run1 = runs.run_begin(cfg, first, now=T0)
    first.flush_sync()
    runs.run_end(run1, first, {"A"}, clean=False, failure="journal full")
    second = Writer(cfg)
    runs.run_begin(cfg, second, now=T0 + timedelta(minutes=1))
    second.flush_sync()
    assert set(SequenceGap.objects.values_list("market_ticker", "reason")) == {
        ("A", "writer_failure"), ("", "writer_failure")}


def test_a_journal_directory_that_refuses_the_run_state_refuses_to_run(tmp_path, monkeypatch):
    def refuse(journal_dir, state):
        raise OSError(errno.EROFS, "simulated read-only file system")
    monkeypatch.setattr(runs, "state_write", refuse)
    cfg = CollectorConfig(journal_dir=tmp_path)
    with pytest.raises(OSError):
        runs.run_begin(cfg, Writer(cfg), now=T0)


# --- trade holes: the persistent retry queue --------------------------------------


class FlakyRest:
    """REST trades that fail `failures` times, then answer."""

    def __init__(self, trades, failures):
        self.trades_list = trades
        self.failures = failures
        self.calls = 0

    async def historical_cutoff(self):
        return {"trades_created_ts": None}

    async def trades(self, *, ticker=None, min_ts=None, max_ts=None):
        self.calls += 1
        if self.calls <= self.failures:
            raise KalshiRestError(503, "/markets/trades", "retries_exhausted", "HTTP 503 after 8 attempts")
        for trade in self.trades_list:
            yield trade


def rest_trade(trade_id, at):
    return {"trade_id": trade_id, "ticker": "A", "yes_price_dollars": "0.4000", "no_price_dollars": "0.6000",
            "count_fp": "1.00", "taker_side": "yes", "created_time": at.isoformat()}


@pytest.mark.django_db(transaction=True)
def test_a_trade_hole_closes_only_after_its_backfill_succeeded_even_across_a_restart(tmp_path):
    cfg = CollectorConfig(journal_dir=tmp_path, flush_seconds=0.01, backfill_retry_initial=0.05,
                          backfill_retry_max=0.1)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    since, until_ = now - timedelta(seconds=30), now - timedelta(seconds=10)
    key = ("", "trade", 7, since)
    writer = Writer(cfg)
    writer.open_gap(("", "trade", "seq_gap", 7, 3, 5, 6, since, None, []))
    writer.flush_sync()
    rest = FlakyRest([rest_trade("t1", since + timedelta(seconds=5))], failures=3)

    async def first_process():
        queue = BackfillQueue(rest=rest, writer=writer, config=cfg)
        queue.POLL_S = 0.05
        await queue.enqueue(since, until_, (), [key])
        task = asyncio.create_task(queue.run())
        await until(lambda: queue.failures >= 2, "failed attempts")
        task.cancel()  # the collector stops with the hole still open

    asyncio.run(first_process())
    writer.flush_sync()
    assert SequenceGap.objects.get().recovered_at is None
    pending = TradeBackfill.objects.get()
    assert pending.status == "pending" and pending.attempts >= 2 and "503" in pending.last_error

    async def second_process():
        queue = BackfillQueue(rest=rest, writer=writer, config=cfg)
        queue.POLL_S = 0.05
        task = asyncio.create_task(queue.run())
        await until(lambda: queue.stored == 1 and queue.idle, "the backfill")
        task.cancel()

    asyncio.run(second_process())
    writer.flush_sync()
    gap = SequenceGap.objects.get()
    assert gap.recovered_at is not None and gap.recovered_at > until_
    assert list(Trade.objects.values_list("trade_id", flat=True)) == ["t1"]
    assert TradeBackfill.objects.get().status == "done"


@pytest.mark.django_db(transaction=True)
def test_overlapping_backfills_are_merged_into_one(tmp_path):
    cfg = CollectorConfig(journal_dir=tmp_path)
    queue = BackfillQueue(rest=None, writer=Writer(cfg), config=cfg)

    async def enqueue_all():
        await queue.enqueue(T0, T0 + timedelta(seconds=10), (), [("", "trade", 1, T0)])
        await queue.enqueue(T0 + timedelta(seconds=5), T0 + timedelta(seconds=20), (),
                            [("", "trade", 1, T0 + timedelta(seconds=5))])
        await queue.enqueue(T0 + timedelta(hours=1), T0 + timedelta(hours=2), (), [])  # apart
        await queue.enqueue(T0, T0 + timedelta(seconds=20), ("A",), [])  # other markets

    asyncio.run(enqueue_all())
    rows = list(TradeBackfill.objects.order_by("since", "id").values_list("since", "until", "market_tickers"))
    assert rows == [
        (T0, T0 + timedelta(seconds=20), []),
        (T0, T0 + timedelta(seconds=20), ["A"]),
        (T0 + timedelta(hours=1), T0 + timedelta(hours=2), []),
    ]
    assert len(TradeBackfill.objects.get(since=T0, market_tickers=[]).gaps) == 2


class GatedRest:
    """REST trades; the first request waits for `gate`: a backfill held in flight."""

    def __init__(self, trades):
        self.trades_list = trades
        self.calls = 0
        self.in_flight = asyncio.Event()
        self.gate = asyncio.Event()

    async def historical_cutoff(self):
        return {"trades_created_ts": None}

    async def trades(self, *, ticker=None, min_ts=None, max_ts=None):
        self.calls += 1
        if self.calls == 1:
            self.in_flight.set()
            await self.gate.wait()
        for trade in self.trades_list:
            yield trade


@pytest.mark.django_db(transaction=True)
def test_a_hole_merged_into_a_backfill_in_flight_is_fetched_and_closed_too(tmp_path):
    # The actions worker may queue a hole while the queue fetches an
    # overlapping window: it is merged into that very row, which must not
    # then be marked done from the copy read before the merge.
    cfg = CollectorConfig(journal_dir=tmp_path, flush_seconds=0.01)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    first, second = ("", "trade", 7, now - timedelta(seconds=30)), ("", "trade", 7, now - timedelta(seconds=15))
    writer = Writer(cfg)
    for key in (first, second):
        writer.open_gap(("", "trade", "seq_gap", 7, 3, 5, 6, key[3], None, []))
    writer.flush_sync()
    # t2 lies only in the second hole's window.
    rest = GatedRest([rest_trade("t1", now - timedelta(seconds=28)), rest_trade("t2", now - timedelta(seconds=12))])

    async def process():
        queue = BackfillQueue(rest=rest, writer=writer, config=cfg)
        queue.POLL_S = 0.05
        await queue.enqueue(now - timedelta(seconds=32), now - timedelta(seconds=20), (), [first])
        task = asyncio.create_task(queue.run())
        await asyncio.wait_for(rest.in_flight.wait(), 60)
        await queue.enqueue(now - timedelta(seconds=25), now - timedelta(seconds=10), (), [second])
        assert await run_db(TradeBackfill.objects.count) == 1  # merged
        rest.gate.set()
        await until(lambda: queue.idle, "the queue to be idle")
        task.cancel()

    asyncio.run(process())
    writer.flush_sync()
    assert sorted(Trade.objects.values_list("trade_id", flat=True)) == ["t1", "t2"]
    assert list(SequenceGap.objects.filter(recovered_at__isnull=True)) == []
    assert TradeBackfill.objects.get().status == "done"


@pytest.mark.django_db(transaction=True)
def test_a_window_queued_while_the_queue_counts_keeps_it_busy(tmp_path, monkeypatch):
    # The queue counts pending rows in a worker thread; a window queued
    # meanwhile must not be forgotten when the (older) count comes back,
    # or `idle` says "nothing pending" while a hole waits for its backfill.
    cfg = CollectorConfig(journal_dir=tmp_path)
    queue = BackfillQueue(rest=None, writer=Writer(cfg), config=cfg)
    queue.POLL_S = 0.05
    counted, release = threading.Event(), threading.Event()
    real_count, real_due = backfill._pending_count, backfill._due
    idle_seen = []

    def slow_count():
        found = real_count()
        if not counted.is_set():
            counted.set()
            release.wait(60)
        return found

    def due(now, limit):
        if counted.is_set():
            idle_seen.append(queue.idle)  # the loop's next turn: the count is taken in
        return real_due(now, limit)

    monkeypatch.setattr(backfill, "_pending_count", slow_count)
    monkeypatch.setattr(backfill, "_due", due)
    later = datetime.now(timezone.utc) + timedelta(hours=1)  # not due during the test

    async def process():
        task = asyncio.create_task(queue.run())
        assert await asyncio.to_thread(counted.wait, 60)  # counted 0 pending, not back yet
        await queue.enqueue(later, later + timedelta(seconds=10), (), [])
        release.set()
        await until(lambda: idle_seen, "the queue's next turn")
        task.cancel()

    asyncio.run(process())
    assert idle_seen[0] is False


# --- gap closing through the open-gap index ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_closing_a_gap_uses_the_open_gap_index_not_the_history():
    # A long history of closed gaps for one market, a few open ones.
    rows = [("A", "orderbook_delta", "seq_gap", i, 1, 1, 3, T0 + timedelta(seconds=i),
             T0 + timedelta(seconds=i, milliseconds=500), []) for i in range(20_000)]
    rows += [("A", "orderbook_delta", "seq_gap", 99_999, 1, 1, 3, T0 + timedelta(days=1), None, [])]
    ingest.gaps_apply([(ingest.GAP_OPEN, row) for row in rows])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sequence_gaps")
        plans = []
        for sql, params in (
            ("UPDATE sequence_gaps SET recovered_at = %s WHERE market_ticker = %s AND channel = %s "
             "AND recovered_at IS NULL AND detected_at <= %s", [T0, "A", "orderbook_delta", T0]),
            ("UPDATE sequence_gaps SET recovered_at = %s WHERE market_ticker = %s AND channel = %s "
             "AND recovered_at IS NULL AND session_id = %s AND detected_at = %s",
             [T0, "A", "orderbook_delta", 1, T0]),
        ):
            cursor.execute("EXPLAIN " + sql, params)
            plans.append("\n".join(r[0] for r in cursor.fetchall()))
    # The key close may also use the unique key; neither scans the history.
    assert "gaps_open_idx" in plans[0], plans[0]
    for plan in plans:
        assert "Seq Scan" not in plan, plan


# --- the whole collector, when nothing can be stored -------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_collector_that_can_store_nothing_exits_with_an_error_and_the_next_start_records_it(
        tmp_path, monkeypatch, proxy):
    from simulator import Simulator

    from .e2e import collector_config, start_run, wait_for

    config = collector_config(tmp_path, writer_failure_exit_s=1.0, db_retry_initial=0.05,
                              db_retry_max=0.2)

    async def scenario():
        sim = Simulator(seed=5, markets=4, rate=200)
        await sim.start(host="127.0.0.1", port=0)
        try:
            run = await start_run(sim, config)
            monkeypatch.setattr(Journal, "write", refusing(errno.ENOSPC))
            proxy.stop()
            await wait_for(lambda: run.task.done(), "the collector to give up")
            with pytest.raises(WriterFailure):
                run.task.result()
            return set(run.collector.connections.markets)  # what it was recording when it gave up
        finally:
            await sim.stop()

    markets = asyncio.run(scenario())
    monkeypatch.undo()
    proxy.start()
    connection.close()
    state = runs.state_read(config.journal_dir)
    assert not state.clean and "neither journaled nor written" in state.failure
    writer = Writer(config)
    run = runs.run_begin(config, writer)
    writer.flush_sync()
    assert run.crash.reason == "writer_failure"
    holes = set(SequenceGap.objects.filter(reason="writer_failure").values_list("market_ticker", flat=True))
    assert holes == markets | {""}
