"""End-to-end ingest benchmark of the collector core (not a test: it prints numbers).

    DEBUG=1 .venv/bin/python bench/ingest_bench.py [--frames 1000000] [--markets 2000]
        [--write-ahead on|off] [--raw-archive on|off] [--flush-seconds 0.5]

1. Generates a recorded-style stream as JSON text (not timed): subscribe
   replies, one snapshot per market, then order-book deltas and trades
   interleaved on one sid each, written to a temporary file and read back
   line by line while timing, as frames off a socket would be.
2. Stages, each on the same stream: parsing alone; parse + sequence + books +
   checkpoints with a writer that discards rows; and the whole pipeline into
   the partitioned tables of a scratch database (`kalshi_bench`, dropped at
   the end), the Writer flushing in its worker thread while frames are fed.
   The end-to-end time runs until the last row is committed.
3. The yardstick, in the same run: plain COPY of the very rows the pipeline
   stored (dumped from the tables, which are then emptied) back into the same
   partitioned tables.
4. Peak memory (VmHWM) of this process after the pipeline stage, with every
   market's book held.

The machine is shared: note the load average printed at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
from bench.django_env import scratch_database  # noqa: E402
from django.db import connection  # noqa: E402

from collector.config import CollectorConfig  # noqa: E402
from kalshi.messages import parse_frame  # noqa: E402
from collector.pipeline import Pipeline  # noqa: E402
from collector.raw_archive import RawArchive  # noqa: E402
from collector.writer import Writer  # noqa: E402

BENCH_DB = "kalshi_bench"
BOOK_SID, TRADE_SID = 1, 2
TABLES = ("orderbook_delta_rows", "trades", "orderbook_snapshots")  # as stored


def generate(path: Path, frames: int, markets: int, trade_share: float, seed: int) -> int:
    """Write the stream, one frame per line; returns the number of frames."""
    rng = random.Random(seed)
    tickers = [f"KXBENCH-26NOV24-T{i:05d}" for i in range(markets)]
    ids = {t: f"00000000-0000-4000-8000-{i:012d}" for i, t in enumerate(tickers)}
    now_ms = int(time.time() * 1000)
    count = 0
    with open(path, "wb") as out:
        def emit(frame):
            nonlocal count
            out.write(orjson.dumps(frame))
            out.write(b"\n")
            count += 1

        emit({"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": BOOK_SID}})
        emit({"id": 1, "type": "subscribed", "msg": {"channel": "trade", "sid": TRADE_SID}})
        book_seq = trade_seq = 0
        # A valid book (the collector treats a level below zero or a crossed
        # book as a lost message): yes bids below mid, no bids below 100 - mid,
        # and a negative delta never takes more than the level holds.
        mids: dict[str, int] = {}
        held: dict[tuple, int] = {}
        for t in tickers:
            book_seq += 1
            mid = mids[t] = rng.randint(20, 80)
            yes, no = [], []
            for side, levels, top in (("yes", yes, mid), ("no", no, 100 - mid)):
                for p in range(top - 10, top):
                    size = held[(t, side, p)] = rng.randint(1, 50000)
                    levels.append([f"0.{p:02d}00", f"{size / 100:.2f}"])
            emit({"type": "orderbook_snapshot", "sid": BOOK_SID, "seq": book_seq,
                  "msg": {"market_ticker": t, "market_id": ids[t],
                          "yes_dollars_fp": yes, "no_dollars_fp": no}})
        while count < frames:
            t = tickers[rng.randrange(markets)]
            now_ms += rng.randint(0, 2)
            if rng.random() < trade_share:
                trade_seq += 1
                price = rng.randint(1, 99)
                side = rng.choice(("yes", "no"))
                emit({"type": "trade", "sid": TRADE_SID, "seq": trade_seq,
                      "msg": {"trade_id": f"{rng.getrandbits(128):032x}", "market_ticker": t,
                              "yes_price_dollars": f"0.{price:02d}00",
                              "no_price_dollars": f"0.{100 - price:02d}00",
                              "count_fp": f"{rng.randint(1, 100000) / 100:.2f}",
                              "taker_side": side, "taker_outcome_side": side,
                              "taker_book_side": "bid" if side == "yes" else "ask",
                              "is_block_trade": False, "ts": now_ms // 1000, "ts_ms": now_ms}})
            else:
                book_seq += 1
                side = rng.choice(("yes", "no"))
                price = rng.randint(1, (mids[t] if side == "yes" else 100 - mids[t]) - 1)
                key = (t, side, price)
                change = rng.randint(1, 20000)
                if held.get(key) and rng.random() < 0.5:
                    change = -min(change, held[key])
                held[key] = held.get(key, 0) + change
                emit({"type": "orderbook_delta", "sid": BOOK_SID, "seq": book_seq,
                      "msg": {"market_ticker": t, "market_id": ids[t],
                              "price_dollars": f"0.{price:02d}00",
                              "delta_fp": f"{change / 100:.2f}",
                              "side": side, "ts_ms": now_ms}})
    return count


def read_frames(path: Path):
    with open(path, "rb") as f:
        for line in f:
            yield line


class DiscardWriter:
    """Takes rows and drops them: the pipeline's own cost, without the database."""

    rows = 0

    def _add(self, row):
        self.rows += 1

    add_delta = add_snapshot = add_trade = add_lifecycle = open_gap = _add

    def close_gap(self, *args):
        self.rows += 1


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def server_cpu_seconds() -> float | None:
    """CPU used so far by the PostgreSQL server this benchmark talks to
    (postmaster and its children), when it runs on this machine."""
    host = connection.settings_dict.get("HOST") or ""
    pidfile = Path(host) / "postmaster.pid"
    if not pidfile.exists():
        return None
    postmaster = int(pidfile.read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, ... utime is field 14, stime 15.
        if int(proc.name) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def stage_parse(path: Path, frames: int) -> float:
    start = time.perf_counter()
    for raw in read_frames(path):
        parse_frame(raw)
    return frames / (time.perf_counter() - start)


def with_archive(pipeline: Pipeline, cfg) -> RawArchive | None:
    """The raw archive the collector would keep (cfg.raw_archive_url, or None when off)."""
    archive = RawArchive.from_config(cfg)
    if archive is not None:
        archive.state = pipeline.state
        pipeline.archive = archive.tap("0")
    return archive


def stage_pipeline_no_db(path: Path, frames: int, cfg) -> float:
    writer = DiscardWriter()
    pipeline = Pipeline(writer, cfg)
    archive = with_archive(pipeline, cfg)
    pipeline.start_session(1)
    start = time.perf_counter()
    for raw in read_frames(path):
        pipeline.handle(raw)
    if archive is not None:
        archive.close()  # its compression and fsyncs count
    return frames / (time.perf_counter() - start)


async def stage_end_to_end(path: Path, cfg) -> tuple[float, Pipeline, Writer]:
    writer = Writer(cfg)
    pipeline = Pipeline(writer, cfg)
    writer.archive = with_archive(pipeline, cfg)
    pipeline.start_session(int(time.time() * 1_000_000))
    stop = asyncio.Event()
    # Back-pressure for the benchmark: never let more than this wait in
    # memory (the collector proper would spill to the journal instead).
    high_water = cfg.max_buffered_rows // 2
    start = time.perf_counter()
    task = asyncio.create_task(writer.run(stop))
    handle = pipeline.handle
    n = 0
    for raw in read_frames(path):
        handle(raw)
        n += 1
        if n % 1000 == 0:
            await asyncio.sleep(0)
            while writer.pending_rows >= high_water:
                await asyncio.sleep(0.002)
    stop.set()
    await task
    elapsed = time.perf_counter() - start
    return elapsed, pipeline, writer


def yardstick_copy(tmpdir: Path) -> tuple[int, float]:
    """Plain COPY of the stored rows back into the same tables; (rows, seconds)."""
    dumps = {}
    with connection.cursor() as cursor:
        raw = cursor.cursor
        for table in TABLES:
            path = tmpdir / f"{table}.copy"
            with open(path, "wb") as out, raw.copy(f"COPY (SELECT * FROM {table}) TO STDOUT") as copy:
                for block in copy:
                    out.write(block)
            dumps[table] = path
            raw.execute(f"TRUNCATE {table}")
    connection.commit() if not connection.get_autocommit() else None
    rows = 0
    start = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        for table, path in dumps.items():
            with open(path, "rb") as src, raw.copy(f"COPY {table} FROM STDIN") as copy:
                while block := src.read(1 << 20):
                    copy.write(block)
            rows += raw.rowcount
    elapsed = time.perf_counter() - start
    return rows, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--markets", type=int, default=2000)
    parser.add_argument("--trade-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write-ahead", choices=("on", "off"), default="on",
                        help="journal every batch before PostgreSQL (the default) or only when it is away")
    parser.add_argument("--raw-archive", choices=("on", "off"), default="on",
                        help="keep the raw archive of every frame (the collector's default) or not")
    parser.add_argument("--flush-seconds", type=float, default=None)
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        tmpdir = Path(tmp)
        stream = tmpdir / "stream.jsonl"
        t0 = time.perf_counter()
        frames = generate(stream, args.frames, args.markets, args.trade_share, args.seed)
        print(f"generated {frames:,} frames ({stream.stat().st_size / 1e6:.0f} MB) over "
              f"{args.markets:,} markets in {time.perf_counter() - t0:.1f}s")

        overrides = {"journal_write_ahead": args.write_ahead == "on",
                     "raw_archive_url": str(tmpdir / "raw") if args.raw_archive == "on" else "off"}
        if args.flush_seconds is not None:
            overrides["flush_seconds"] = args.flush_seconds
        cfg = CollectorConfig(journal_dir=tmpdir / "journal", **overrides)
        print(f"config: write_ahead={cfg.journal_write_ahead} raw_archive={args.raw_archive} "
              f"flush_rows={cfg.flush_rows} flush_seconds={cfg.flush_seconds} "
              f"checkpoint every {cfg.checkpoint_every_deltas} deltas and daily, "
              f"max_buffered_rows={cfg.max_buffered_rows}")
        print(f"parse only:                 {stage_parse(stream, frames):>10,.0f} frames/s")
        print(f"pipeline, rows discarded:   {stage_pipeline_no_db(stream, frames, cfg):>10,.0f} frames/s")

        with scratch_database(BENCH_DB):
            rss_before = vm_kb("VmRSS")
            cpu_before, server_before = time.process_time(), server_cpu_seconds()
            elapsed, pipeline, writer = asyncio.run(stage_end_to_end(stream, cfg))
            cpu_used = time.process_time() - cpu_before
            server_used = (
                server_cpu_seconds() - server_before if server_before is not None else None
            )
            peak_kb = vm_kb("VmHWM")
            stats = writer.stats()
            rows = stats["rows_written"]
            print(f"end to end (into PostgreSQL): {frames / elapsed:>8,.0f} frames/s, "
                  f"{rows / elapsed:,.0f} rows/s ({rows:,} rows in {elapsed:.1f}s)")
            # CPU per frame does not depend on how busy the machine is.
            server_note = (
                f", PostgreSQL {server_used / frames * 1e6:.1f} us" if server_used is not None else ""
            )
            print(f"  CPU per frame: collector process {cpu_used / frames * 1e6:.1f} us"
                  f"{server_note}")
            counts = {"gaps": 0, "malformed": 0, "checkpoints": 0, **pipeline.stats()}
            print(f"  deltas {counts['deltas']:,}  trades {counts['trades']:,}  "
                  f"snapshots {counts['snapshots']:,}  checkpoints {counts['checkpoints']:,}  "
                  f"gaps {counts['gaps']}  malformed {counts['malformed']}")
            print(f"  writer: {stats['batches_written']} batches, spills {stats['spills']}, "
                  f"journaled {stats['batches_journaled']}, journal writes {stats['journal_writes']}")
            print(f"  durability: the longest a row sat only in memory {stats['memory_only_max_s']:.3f}s")
            if writer.archive is not None:
                raw = writer.archive.stats()
                print(f"  raw archive: {raw['bytes_written'] / frames:.1f} bytes a frame compressed "
                      f"({raw['bytes_raw'] / frames:.0f} as lines), {raw['syncs']} fsyncs")
            print(f"  books held: {len(pipeline.books):,}; memory: RSS before "
                  f"{rss_before / 1024:.0f} MB, peak (VmHWM) {peak_kb / 1024:.0f} MB")
            copy_rows, copy_elapsed = yardstick_copy(tmpdir)
            print(f"yardstick, plain COPY of the same {copy_rows:,} rows: "
                  f"{copy_rows / copy_elapsed:,.0f} rows/s ({copy_elapsed:.1f}s)")
            print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
