"""What the record costs to store, on a full-exchange-like mix (not a test: it prints numbers).

    DEBUG=1 .venv/bin/python bench/storage_bench.py [--markets 5000] [--deltas 1900000]
        [--hours 2] [--zipf 1.1] [--trade-share 0.013] [--samples 400]

Kalshi lists tens of thousands of markets, most of them quiet: a few carry most
of the book changes. The mix here has `--markets` markets whose activity
follows a Zipf law (market i gets a share proportional to 1 / i^zipf), spread
evenly over `--hours` of exchange time, with books of 5 to 40 levels a side and
trades at the full exchange's ratio (about 2.5M trades to 191.5M deltas a day).

1. Generates the stream (not timed), each frame with the receive time the
   collector would have stamped on it, so that time-based policies (the
   checkpoints) see two hours pass, not the seconds the benchmark takes.
2. Feeds it through the collector's own Pipeline and Writer into a scratch
   database (`kalshi_storage_bench`, dropped at the end): ingest frames/s end
   to end, until the last row is committed.
3. Measures what that cost on disk: bytes per delta in PostgreSQL (heap,
   TOAST and indexes of every partition; trades and snapshots included),
   the checkpoints' share; then again once the closed day is packed
   (`pack_closed_days`: deltas several to a row, markets/record/packs.py;
   indexes rebuilt), and how long that took; and the day archived to a Parquet lake in a
   temporary folder (`manage.py archive`: written, read back and verified
   market by market): its bytes per delta and how long that took; and
   projects a 191.5M-delta day.
4. Times `book_at` (markets/replay.py: the selector behind /orderbook) at
   random instants of the hottest market and of markets drawn by activity:
   p50/p99 and the deltas each rebuild applied; and a 1000-row page of
   /deltas deep in the hottest market's day. Before packing and after, at
   the same instants.

The machine may be shared: the load average is printed at the start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.django_env import scratch_database  # noqa: E402
from bench.django_env import setup_django  # noqa: E402

os.environ.setdefault("DEBUG", "1")
setup_django()

import orjson  # noqa: E402
from django.db import connection  # noqa: E402

from collector.config import CollectorConfig  # noqa: E402
from collector.pipeline import Pipeline  # noqa: E402
from collector.writer import Writer  # noqa: E402
from markets.objectstore import location_from_url  # noqa: E402
from markets.partitioning import pack_closed_days  # noqa: E402
from markets.record import packs  # noqa: E402
from markets.record.lake import archive_day  # noqa: E402
from markets.record.schema import DELTAS, SNAPSHOTS, TRADES  # noqa: E402
from markets.replay import book_at  # noqa: E402
from markets.selectors import deltas_page  # noqa: E402

BENCH_DB = "kalshi_storage_bench"
BOOK_SID, TRADE_SID = 1, 2
FULL_DAY_DELTAS = 191_500_000
VENDOR_BYTES_PER_DELTA = 1.27e9 / FULL_DAY_DELTAS
START = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
TABLES = (DELTAS.stored_table, packs.TABLE, SNAPSHOTS.stored_table, TRADES.stored_table)


def _weights(markets: int, zipf: float) -> list[float]:
    return list(itertools.accumulate(1 / (i + 1) ** zipf for i in range(markets)))


def generate(path: Path, args) -> dict:
    """Write `received_at µs<TAB>frame` lines; return counts and the tickers by activity."""
    rng = random.Random(args.seed)
    tickers = [f"KXMIX-26NOV24-M{i:05d}" for i in range(args.markets)]
    ids = {t: f"00000000-0000-4000-8000-{i:012d}" for i, t in enumerate(tickers)}
    cumulative = _weights(args.markets, args.zipf)
    total_weight = cumulative[-1]
    span_us = int(args.hours * 3600 * 1e6)
    start_us = int(START.timestamp() * 1e6)
    frames = deltas = trades = 0
    book_seq = trade_seq = 0
    mids: dict[str, int] = {}
    held: dict[tuple, int] = {}
    with open(path, "wb") as out:
        def emit(at_us: int, frame: dict) -> None:
            nonlocal frames
            out.write(b"%d\t" % at_us)
            out.write(orjson.dumps(frame))
            out.write(b"\n")
            frames += 1

        emit(start_us, {"id": 1, "type": "subscribed",
                        "msg": {"channel": "orderbook_delta", "sid": BOOK_SID}})
        emit(start_us, {"id": 2, "type": "subscribed",
                        "msg": {"channel": "trade", "sid": TRADE_SID}})
        # The opening snapshots, one per market, in the first second.
        for i, t in enumerate(tickers):
            book_seq += 1
            mid = mids[t] = rng.randint(20, 80)
            depth = rng.randint(5, 40)
            levels = {}
            for side, top in (("yes", mid), ("no", 100 - mid)):
                levels[side] = []
                for p in range(max(1, top - depth), top):
                    size = held[(t, side, p)] = rng.randint(1, 50000)
                    levels[side].append([f"0.{p:02d}00", f"{size / 100:.2f}"])
            emit(start_us + i * 1_000_000 // args.markets,
                 {"type": "orderbook_snapshot", "sid": BOOK_SID, "seq": book_seq,
                  "msg": {"market_ticker": t, "market_id": ids[t],
                          "yes_dollars_fp": levels["yes"], "no_dollars_fp": levels["no"]}})
        # Book changes and trades, evenly over the window, markets by Zipf.
        events = args.deltas + int(args.deltas * args.trade_share)
        step = (span_us - 1_000_000) / events
        now_us = start_us + 1_000_000
        for n in range(events):
            now_us = start_us + 1_000_000 + int(n * step)
            t = tickers[bisect.bisect(cumulative, rng.random() * total_weight)]
            ts_ms = now_us // 1000 - rng.randint(5, 60)
            if deltas >= args.deltas or (trades < events - args.deltas
                                         and rng.random() < args.trade_share):
                trade_seq += 1
                trades += 1
                price = rng.randint(1, 99)
                side = rng.choice(("yes", "no"))
                emit(now_us, {"type": "trade", "sid": TRADE_SID, "seq": trade_seq,
                              "msg": {"trade_id": f"{rng.getrandbits(128):032x}",
                                      "market_ticker": t,
                                      "yes_price_dollars": f"0.{price:02d}00",
                                      "no_price_dollars": f"0.{100 - price:02d}00",
                                      "count_fp": f"{rng.randint(1, 100000) / 100:.2f}",
                                      "taker_side": side, "taker_outcome_side": side,
                                      "taker_book_side": "bid" if side == "yes" else "ask",
                                      "is_block_trade": False, "ts": ts_ms // 1000,
                                      "ts_ms": ts_ms}})
                continue
            book_seq += 1
            deltas += 1
            side = rng.choice(("yes", "no"))
            top = mids[t] if side == "yes" else 100 - mids[t]
            price = rng.randint(max(1, top - 45), top - 1)
            key = (t, side, price)
            change = rng.randint(1, 20000)
            if held.get(key) and rng.random() < 0.5:
                change = -min(change, held[key])
            held[key] = held.get(key, 0) + change
            emit(now_us, {"type": "orderbook_delta", "sid": BOOK_SID, "seq": book_seq,
                          "msg": {"market_ticker": t, "market_id": ids[t],
                                  "price_dollars": f"0.{price:02d}00",
                                  "delta_fp": f"{change / 100:.2f}",
                                  "side": side, "ts_ms": ts_ms}})
    return {"frames": frames, "deltas": deltas, "trades": trades, "tickers": tickers,
            "cumulative": cumulative, "end": datetime.fromtimestamp(now_us / 1e6, timezone.utc)}


def read_frames(path: Path):
    with open(path, "rb") as f:
        for line in f:
            at_us, raw = line.split(b"\t", 1)
            yield datetime.fromtimestamp(int(at_us) / 1e6, timezone.utc), raw


async def ingest(path: Path, cfg: CollectorConfig) -> tuple[float, Pipeline, Writer]:
    """Every frame through the Pipeline into PostgreSQL; seconds until the last commit."""
    writer = Writer(cfg)
    # The receive clock is the stream's: the session starts at its beginning,
    # and anything the pipeline stamps itself is stamped in exchange time.
    now = [START]
    pipeline = Pipeline(writer, cfg, clock=lambda: now[0])
    pipeline.start_session(int(START.timestamp() * 1_000_000))
    stop = asyncio.Event()
    high_water = cfg.max_buffered_rows // 2
    started = time.perf_counter()
    task = asyncio.create_task(writer.run(stop))
    handle = pipeline.handle
    for n, (at, raw) in enumerate(read_frames(path), 1):
        now[0] = at
        handle(raw, at)
        if n % 1000 == 0:
            await asyncio.sleep(0)
            while writer.pending_rows >= high_water:
                await asyncio.sleep(0.002)
    stop.set()
    await task
    return time.perf_counter() - started, pipeline, writer


def table_bytes(table: str) -> int:
    """Heap, TOAST and indexes of every partition of `table` (or of `table`, not partitioned)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), "
            "pg_total_relation_size(%s::regclass)) "
            "FROM pg_partition_tree(%s::regclass) WHERE isleaf", [table, table])
        return int(cursor.fetchone()[0])


def snapshot_shares() -> dict[str, tuple[int, int]]:
    """Rows and row bytes (pg_column_size of the whole row, TOAST included) by source."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT source, count(*), sum(pg_column_size(s.*)) "
                       "FROM orderbook_snapshots s GROUP BY source")
        return {source: (int(rows), int(size)) for source, rows, size in cursor.fetchall()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_book_at(tickers: list[str], start: datetime, end: datetime, rng) -> tuple[list, list]:
    span = (end - start).total_seconds()
    times, applied = [], []
    for ticker in tickers:
        at = start + timedelta(seconds=rng.random() * span)
        began = time.perf_counter()
        result = book_at(ticker, at)
        times.append((time.perf_counter() - began) * 1000)
        applied.append(result.deltas_applied)
    return times, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=5000)
    parser.add_argument("--deltas", type=int, default=1_900_000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--trade-share", type=float, default=2.5 / 191.5)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp:
        tmpdir = Path(tmp)
        stream = tmpdir / "stream.tsv"
        t0 = time.perf_counter()
        mix = generate(stream, args)
        print(f"generated {mix['frames']:,} frames ({mix['deltas']:,} deltas, "
              f"{mix['trades']:,} trades) over {args.markets:,} markets, Zipf {args.zipf}, "
              f"{args.hours:g} h of exchange time, in {time.perf_counter() - t0:.0f}s")
        cfg = CollectorConfig(journal_dir=tmpdir / "journal")
        with scratch_database(BENCH_DB):
            elapsed, pipeline, writer = asyncio.run(ingest(stream, cfg))
            counts = {"checkpoints": 0, **pipeline.stats()}
            print(f"ingest, end to end into PostgreSQL: {mix['frames'] / elapsed:,.0f} frames/s "
                  f"({mix['frames']:,} frames in {elapsed:.1f}s)")
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
            report_book_at(mix, args, "loose rows")
            report_storage(mix, counts, tmpdir)
            report_book_at(mix, args, "packed")
            print(f"load average at end: {os.getloadavg()}")


def report_storage(mix: dict, counts: dict, tmpdir: Path) -> None:
    deltas = mix["deltas"]
    sizes = {table: table_bytes(table) for table in TABLES + ("record_markets",)}
    total = sum(sizes.values())
    delta_bytes = sizes[DELTAS.stored_table] + sizes["record_markets"]
    print(f"rows: deltas {counts['deltas']:,}, snapshots {counts['snapshots']:,}, "
          f"checkpoints {counts['checkpoints']:,}, trades {counts['trades']:,}")
    for table, size in sizes.items():
        print(f"  {table:<22} {size / 1e6:>9.1f} MB  {size / deltas:>7.1f} bytes per delta")
    print(f"PostgreSQL, all-in: {total / deltas:.1f} bytes per delta "
          f"(delta rows alone, with the market ids, {delta_bytes / deltas:.1f})")
    shares = snapshot_shares()
    checkpoint_rows, checkpoint_bytes = shares.get("checkpoint", (0, 0))
    all_snapshot_bytes = sum(size for _, size in shares.values()) or 1
    # The table's disk bytes, apportioned to checkpoints by their share of row bytes.
    checkpoint_disk = sizes["orderbook_snapshots"] * checkpoint_bytes / all_snapshot_bytes
    print(f"checkpoints: {checkpoint_rows:,} rows, {checkpoint_disk / 1e6:.1f} MB, "
          f"{checkpoint_disk / max(delta_bytes, 1):.1%} of delta bytes, "
          f"{checkpoint_bytes / max(checkpoint_rows, 1):,.0f} bytes a row")
    started = time.perf_counter()
    pack_closed_days()
    pack_seconds = time.perf_counter() - started
    packed = {table: table_bytes(table) for table in TABLES + ("record_markets",)}
    packed_deltas = packed[DELTAS.stored_table] + packed[packs.TABLE] + packed["record_markets"]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), avg(deltas) FROM {packs.TABLE}")
        chunks, per_chunk = cursor.fetchone()
    print(f"once the day has closed, its deltas packed into {chunks:,} chunks "
          f"({float(per_chunk or 0):.1f} deltas each) and its indexes rebuilt (archive, "
          f"{pack_seconds:.1f}s; a {FULL_DAY_DELTAS / 1e6:.1f}M-delta day at that rate: "
          f"{FULL_DAY_DELTAS / (deltas / pack_seconds) / 60:.0f} min):")
    for table, size in packed.items():
        print(f"  {table:<22} {size / 1e6:>9.1f} MB  {size / deltas:>7.1f} bytes per delta")
    print(f"  PostgreSQL, all-in: {sum(packed.values()) / deltas:.1f} bytes per delta (deltas "
          f"alone {packed_deltas / deltas:.1f}); a {FULL_DAY_DELTAS / 1e6:.1f}M-delta day: "
          f"{sum(packed.values()) / deltas * FULL_DAY_DELTAS / 1e9:,.1f} GB")
    day = mix["end"].date()
    lake = location_from_url(str(tmpdir / "lake"))
    parquet, started = {}, time.perf_counter()
    for table in (DELTAS, SNAPSHOTS, TRADES):
        archived = archive_day(table, day, lake)
        assert archived.verified, archived.mismatches[:3]
        parquet[table.name] = archived.bytes
    archive_seconds = time.perf_counter() - started
    print("Parquet lake (zstd): " + ", ".join(
        f"{table} {size / deltas:.2f}" for table, size in parquet.items())
        + f" bytes per delta; deltas alone {parquet['deltas'] / deltas:.2f} "
        f"(the vendor's file: {VENDOR_BYTES_PER_DELTA:.2f})")
    print(f"archive (write, read back, verify per market) of the day: {archive_seconds:.1f}s, "
          f"{deltas / archive_seconds:,.0f} deltas/s; a {FULL_DAY_DELTAS / 1e6:.1f}M-delta day "
          f"at that rate: {FULL_DAY_DELTAS / (deltas / archive_seconds) / 60:.0f} min")
    print(f"projection for a {FULL_DAY_DELTAS / 1e6:.1f}M-delta day: PostgreSQL "
          f"{total / deltas * FULL_DAY_DELTAS / 1e9:,.1f} GB, Parquet "
          f"{sum(parquet.values()) / deltas * FULL_DAY_DELTAS / 1e9:,.2f} GB")


def time_deltas_page(ticker: str, start: datetime, end: datetime, rng, samples: int) -> list:
    """A 1000-row page of /deltas (the selector) over the whole UTC day, after a random key."""
    midnight = datetime.combine(start.date(), datetime.min.time(), timezone.utc)
    times = []
    for _ in range(samples):
        at = start + timedelta(seconds=rng.random() * (end - start).total_seconds())
        began = time.perf_counter()
        deltas_page(market_ticker=ticker, start=midnight, end=midnight + timedelta(days=1),
                    after=(at, 0, 0, 0), limit=1000)
        times.append((time.perf_counter() - began) * 1000)
    return times


def report_book_at(mix: dict, args, label: str) -> None:
    print(f"reads ({label}):")
    rng = random.Random(args.seed + 1)
    start, end = START + timedelta(seconds=1), mix["end"]
    tickers, cumulative = mix["tickers"], mix["cumulative"]
    hottest = [tickers[0]] * args.samples
    by_activity = [tickers[bisect.bisect(cumulative, rng.random() * cumulative[-1])]
                   for _ in range(args.samples)]
    time_book_at(hottest[:20], start, end, rng)  # warm the cache
    for label, sample in (("hottest market", hottest), ("markets by activity", by_activity)):
        times, applied = time_book_at(sample, start, end, rng)
        print(f"book_at, {label} ({len(times)} instants): p50 {statistics.median(times):.1f} ms, "
              f"p99 {percentile(times, 0.99):.1f} ms, max {max(times):.1f} ms; deltas applied "
              f"p50 {statistics.median(applied):.0f}, max {max(applied)}")
    times = time_deltas_page(tickers[0], start, end, rng, args.samples)
    print(f"a 1000-row page of /deltas (selector), hottest market, deep in the day "
          f"({len(times)} pages): p50 {statistics.median(times):.1f} ms, "
          f"p99 {percentile(times, 0.99):.1f} ms")


if __name__ == "__main__":
    main()
