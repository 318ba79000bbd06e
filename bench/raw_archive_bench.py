"""Raw archive benchmark (not a test: it prints numbers).

    DEBUG=1 .venv/bin/python bench/raw_archive_bench.py [--frames 300000] [--markets 2000]

1. The stream of bench/ingest_bench.py (snapshots, then deltas and trades at
   random over the markets), as text frames.
2. Archive alone: every frame through an ArchiveTap, then close (compression
   and fsync included): frames/s, bytes a frame on disk (zstd) and as lines.
3. Reading it back (read_records): frames/s. The same archive-alone numbers
   on the simulator's own stream (simulator/offline.py: Kalshi's wire format
   as the simulator renders it, a market's events in their order), which
   compresses like a real feed rather than like random numbers.
4. Re-ingest: the stream recorded into a scratch database (`kalshi_bench`)
   through the pipeline and Writer with the archive on, then `reingest()`
   over the whole window twice: on the untouched record (changes nothing)
   and after 1% of the deltas were deleted (restores them). Frames/s of each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.django_env import scratch_database  # noqa: E402
from bench.ingest_bench import BENCH_DB, generate, read_frames, stage_end_to_end  # noqa: E402 (sets up Django)

from django.db import connection  # noqa: E402

from collector.config import CollectorConfig  # noqa: E402
from collector.raw_archive import RawArchive, ReadStats, archive_files, read_records  # noqa: E402
from collector.reingest import reingest  # noqa: E402
from markets.objectstore import location_from_url  # noqa: E402
from simulator.offline import offline_stream  # noqa: E402


def stage_archive(frames: list[str], root: Path) -> tuple[float, dict]:
    archive = RawArchive(location_from_url(str(root)), config=CollectorConfig())
    tap = archive.tap("0")
    at = datetime.now(timezone.utc)
    step = timedelta(microseconds=50)
    start = time.perf_counter()
    for raw in frames:
        at += step
        tap.frame(raw, at, 1)
    archive.close()
    return len(frames) / (time.perf_counter() - start), archive.stats()


def stage_read(root: Path) -> tuple[float, int]:
    location = location_from_url(str(root))
    now = datetime.now(timezone.utc)
    files = archive_files(location, now - timedelta(days=1), now + timedelta(days=2))
    start = time.perf_counter()
    n = 0
    for hour in sorted(files):
        for relative, _ in files[hour]:
            for _ in read_records(location, relative, ReadStats()):
                n += 1
    return n / (time.perf_counter() - start), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--markets", type=int, default=2000)
    parser.add_argument("--trade-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sim-steps", type=int, default=100_000,
                        help="steps of the simulator's offline stream (500 markets)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="raw-bench-") as tmp:
        tmpdir = Path(tmp)
        stream = tmpdir / "stream.jsonl"
        count = generate(stream, args.frames, args.markets, args.trade_share, args.seed)
        frames = [line.rstrip(b"\n").decode() for line in read_frames(stream)]
        text_bytes = sum(len(f) for f in frames)
        print(f"stream: {count:,} frames over {args.markets:,} markets, "
              f"{text_bytes / count:.0f} bytes a frame as received")

        rate, stats = stage_archive(frames, tmpdir / "raw-alone")
        print(f"archive alone:  {rate:>10,.0f} frames/s ({1e6 / rate:.2f} us a frame, "
              f"compression and fsync included)")
        print(f"  on disk: {stats['bytes_written'] / count:.1f} bytes a frame zstd "
              f"({stats['bytes_raw'] / count:.0f} as JSON lines, ratio "
              f"{stats['bytes_raw'] / stats['bytes_written']:.1f}x); "
              f"{stats['bytes_written'] / count * 191.5e6 / 1e9:.1f} GB a day at 191.5M frames")
        rate, read = stage_read(tmpdir / "raw-alone")
        print(f"read back:      {rate:>10,.0f} records/s ({read:,} records)")

        sim_frames = offline_stream(markets=500, steps=args.sim_steps).frames
        sim_bytes = sum(len(f) for f in sim_frames)
        rate, stats = stage_archive(sim_frames, tmpdir / "raw-sim")
        print(f"simulator stream: {len(sim_frames):,} frames, {sim_bytes / len(sim_frames):.0f} bytes a "
              f"frame as received; archive alone {rate:,.0f} frames/s; on disk "
              f"{stats['bytes_written'] / len(sim_frames):.1f} bytes a frame "
              f"({stats['bytes_raw'] / stats['bytes_written']:.1f}x)")

        cfg = CollectorConfig(journal_dir=tmpdir / "journal", raw_archive_url=str(tmpdir / "raw"))
        with scratch_database(BENCH_DB):
            started = datetime.now(timezone.utc) - timedelta(minutes=1)
            elapsed, _, writer = asyncio.run(stage_end_to_end(stream, cfg))
            print(f"recorded with the archive on: {count / elapsed:,.0f} frames/s end to end")
            window = dict(location=location_from_url(str(tmpdir / "raw")), start=started,
                          end=datetime.now(timezone.utc) + timedelta(minutes=1))
            t0 = time.perf_counter()
            report = reingest(**window)
            took = time.perf_counter() - t0
            print(f"reingest, untouched record: {report.frames / took:>8,.0f} frames/s "
                  f"({report.frames:,} frames in {took:.1f}s), changed {report.changed} rows")
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM orderbook_delta_rows WHERE seq % 100 = 0")
                deleted = cursor.rowcount
            t0 = time.perf_counter()
            report = reingest(**window)
            took = time.perf_counter() - t0
            print(f"reingest, {deleted:,} deltas deleted: {report.frames / took:>8,.0f} frames/s, "
                  f"inserted {report.inserted['deltas']:,} deltas back, changed {report.changed} rows")
            print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
