"""Benchmark the bulk-data paths on the 1,000,000-delta day of bench/generate_day.py.

Prints, does not assert (see docs/bulk.md for the numbers measured):

* the replay stream over HTTP, served by gunicorn on 127.0.0.1 (an
  ephemeral port), read by a plain HTTP client: events/s for the hot
  market's deltas, for deltas + trades + lifecycle, and gzipped; the worker's
  peak memory (the stream must not grow with the range);
* `manage.py export` of the whole day (every table, every market) to
  Parquet, then to gzip CSV: wall time and the child's peak memory;
* the size of the Parquet files against the day's partitions in PostgreSQL.

    python bench/bulk_bench.py --day 2026-11-23     # loads the day first if it is not there
    python bench/bulk_bench.py --day 2026-11-23 --only replay

The machine is shared: the load average before and after each step is
printed with it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.django_env import ROOT, database_url, setup_django  # noqa: E402

PYTHON = sys.executable
TARGET_EVENTS_PER_SECOND = 200_000
TARGET_EXPORT_SECONDS = 10
TARGET_EXPORT_MB = 300
READ_BYTES = 1 << 20


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} on {os.cpu_count()} CPUs"


class Server:
    """gunicorn serving the project on 127.0.0.1, on a port the OS picked."""

    def __init__(self, workers: int = 1):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        env = dict(os.environ, DEBUG="0", SECRET_KEY="bench-only", DATABASE_URL=database_url(),
                   LOG_LEVEL="WARNING")
        fd = self.listener.fileno()
        self.process = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "kalshi_data.wsgi:application", "--bind", f"fd://{fd}",
             "--workers", str(workers), "--timeout", "300", "--log-level", "warning"],
            cwd=ROOT, env=env, pass_fds=[fd],
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, _ = self.get("/api/schema/", {})
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not start")

    def get(self, path, headers):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, body

    def worker_peak_mb(self) -> float | None:
        """Peak resident memory of the (first) worker, from /proc."""
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pid = children.read_text().split()[0]
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except (OSError, IndexError):
            return None
        return None

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.listener.close()


def stream(server: Server, key: str, query: dict, *, gzip: bool) -> tuple[int, int, float]:
    """(events, bytes on the wire, seconds to the last byte) of one replay request."""
    headers = {"Authorization": f"Bearer {key}"}
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    started = time.perf_counter()
    connection.request("GET", "/api/v1/replay?" + urlencode(query), headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"replay answered {response.status}: {response.read()[:500]!r}")
    inflate = zlib.decompressobj(31) if gzip else None
    lines = wire = 0
    while True:
        chunk = response.read1(READ_BYTES) if hasattr(response, "read1") else response.read(
            READ_BYTES)
        if not chunk:
            break
        wire += len(chunk)
        lines += (inflate.decompress(chunk) if inflate else chunk).count(b"\n")
    elapsed = time.perf_counter() - started
    connection.close()
    return lines - 1, wire, elapsed  # the last line is the `end` trailer


def bench_replay(day_start: datetime, hot: str) -> None:
    from backtest_api.models import ApiKey, api_key_create

    key_row, key = api_key_create(name="bulk-bench")
    server = Server()
    try:
        base = {"market_tickers": hot, "start_time": day_start.isoformat(),
                "end_time": (day_start + timedelta(days=1)).isoformat()}
        print(f"replay over HTTP (gunicorn, 1 sync worker, 127.0.0.1:{server.port}); {load()}")
        for label, query, gzip in (
            ("deltas", {**base, "types": "deltas"}, False),
            ("deltas+trades+lifecycle", base, False),
            ("deltas+trades+lifecycle, gzip", base, True),
        ):
            events, wire, seconds = stream(server, key, query, gzip=gzip)
            rate = events / seconds
            verdict = "ok" if rate >= TARGET_EVENTS_PER_SECOND else "below target"
            print(f"  {label:32s} {events:>10,} events {seconds:6.2f} s {rate:>10,.0f} ev/s "
                  f"{wire / 1e6:8.1f} MB on the wire  [{verdict}: >= "
                  f"{TARGET_EVENTS_PER_SECOND:,}]  {load()}")
        peak = server.worker_peak_mb()
        if peak is not None:
            print(f"  worker peak memory over all streams: {peak:.0f} MB")
    finally:
        server.stop()
        ApiKey.objects.filter(pk=key_row.pk).delete()


def run_export(day: date, fmt: str, out: Path) -> tuple[float, float, float]:
    """(seconds, CPU seconds, peak MB) of `manage.py export` of the day in a child process.

    The child runs under a small wrapper that reports the peak resident
    memory of its own child alone (RUSAGE_CHILDREN of this process would
    include the gunicorn processes started before).
    """
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True,"
               " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
               " usage = resource.getrusage(resource.RUSAGE_CHILDREN);"
               " print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)")
    started = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-c", wrapper, PYTHON, "manage.py", "export", "--start-date", day.isoformat(),
         "--end-date", day.isoformat(), "--format", fmt, "--out", str(out)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    peak_kb, cpu = done.stdout.split()
    return seconds, float(cpu), int(peak_kb) / 1024


def table_bytes(day: date) -> dict[str, tuple[int, int]]:
    """(heap, heap + indexes + toast) bytes of the day's partition of each tick table.

    Each partition is compacted first (VACUUM FULL): re-generating the day
    leaves dead rows that would double its size. This is a benchmark
    database; the lock it takes does not matter here.
    """
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        for table in ("orderbook_delta_rows", "trades", "orderbook_snapshots"):
            name = f"{table}_{day.strftime('%Y_%m_%d')}"
            cursor.execute(f'VACUUM FULL "{name}"')
            cursor.execute("SELECT pg_relation_size(%s), pg_total_relation_size(%s)",
                           [name, name])
            sizes[table] = cursor.fetchone()
    return sizes


def bench_export(day: date) -> None:
    out = Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    try:
        print(f"export of {day} (all tables, all markets); {load()}")
        for fmt in ("parquet", "csv"):
            target = out / fmt
            seconds, cpu, peak = run_export(day, fmt, target)
            size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
            verdict = ""
            if fmt == "parquet":
                ok = seconds <= TARGET_EXPORT_SECONDS and peak <= TARGET_EXPORT_MB
                verdict = (f"  [{'ok' if ok else 'below target'}: <= {TARGET_EXPORT_SECONDS} s,"
                           f" <= {TARGET_EXPORT_MB} MB]")
            print(f"  {fmt:8s} {seconds:6.2f} s ({cpu:5.2f} s CPU in the exporter)  peak {peak:6.0f} MB"
                  f"  {size / 1e6:7.1f} MB "
                  f"written{verdict}  {load()}")
        print("  size per table (Parquet file vs the day's partition, compacted: heap / with"
              " indexes):")
        folder = {"orderbook_delta_rows": "deltas", "trades": "trades",
                  "orderbook_snapshots": "snapshots"}
        for table, (heap, total) in table_bytes(day).items():
            parquet = out / "parquet" / f"type={folder[table]}" / f"date={day}" / "part-0.parquet"
            size = parquet.stat().st_size
            print(f"    {table:20s} parquet {size / 1e6:7.1f} MB   table {heap / 1e6:7.1f} MB"
                  f" / {total / 1e6:7.1f} MB   ({heap / size:4.1f}x / {total / size:4.1f}x"
                  " smaller)")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bench_book_snapshots(day_start: datetime, hot: str) -> None:
    """A 1000-point page of book snapshots (in process: the selector, not HTTP)."""
    from itertools import islice

    from markets.book_snapshots import book_snapshots
    from markets.replay import book_at

    print(f"book snapshots of {hot}, depth 10, a page of 1000 points; {load()}")
    for interval in (timedelta(seconds=1), timedelta(minutes=1)):
        started = time.perf_counter()
        points = list(islice(book_snapshots(
            market_ticker=hot, start_time=day_start, end_time=day_start + timedelta(days=1),
            interval=interval, depth=10), 1000))
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        for point in points[::50]:
            book_at(hot, point.at)
        naive = (time.perf_counter() - started) / len(points[::50]) * len(points)
        print(f"  every {interval}: {seconds:6.2f} s in one pass; one book_at per point "
              f"would take {naive:6.2f} s  {load()}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", type=date.fromisoformat, help="UTC day (default: yesterday).")
    parser.add_argument("--regenerate", action="store_true",
                        help="Load the day with bench/generate_day.py even if it is there.")
    parser.add_argument("--only", choices=("replay", "export", "book_snapshots"),
                        help="Run one part.")
    args = parser.parse_args(argv)
    setup_django()
    from bench.generate_day import DEFAULT_PREFIX, generate_day

    from markets.models import OrderbookDelta

    hot = f"{DEFAULT_PREFIX}-HOT"
    day = args.day or (datetime.now(timezone.utc).date() - timedelta(days=1))
    day_start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    loaded = OrderbookDelta.objects.filter(
        market_ticker=hot, received_at__gte=day_start,
        received_at__lt=day_start + timedelta(days=1)).exists()
    if args.regenerate or not loaded:
        generate_day(day=day)
    args.day = day
    if args.only in (None, "replay"):
        bench_replay(day_start, hot)
    if args.only in (None, "book_snapshots"):
        bench_book_snapshots(day_start, hot)
    if args.only in (None, "export"):
        bench_export(args.day)


if __name__ == "__main__":
    main()
