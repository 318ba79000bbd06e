"""Small reads with and without abusive clients, against gunicorn with production settings.

All on 127.0.0.1 (ephemeral ports), bounded in time. It starts a private
redis-server and gunicorn with deploy/gunicorn.conf.py and the production
settings of deploy/production.env.example (DEBUG off, REDIS_URL, rate
limits as shipped), then runs two phases of --seconds each:

1. baseline: --clients threads of small reads (series, a market, a quiet
   market's order book, a page of trades), each with its own API key;
2. the same, plus abusive clients: --stalled replay streams of the hot
   market's whole day whose client never reads (re-opened whenever the
   server drops them), and --bulk clients looping over the most expensive
   pages (book_snapshots interval=90s limit=1000, coverage over a year,
   the order book at the day's end, candles over a year), as fast as they
   are answered; the abusers share two API keys.

It prints p50/p99 of the small reads in each phase and their ratio (target:
p99 under abuse <= 3x), how the abusive requests were answered, the peak
memory of the gunicorn workers (RSS from /proc), and the number of 5xx
(must be 0). It asserts nothing.

    python bench/abuse_bench.py [--seconds 60] [--clients 8] [--stalled 4] [--bulk 4]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.django_env import ROOT, database_url, setup_django  # noqa: E402
from bench.generate_day import DEFAULT_PREFIX, generate_day  # noqa: E402
from tests.redis_server import free_port, redis_server  # noqa: E402


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def production_env(**extra) -> dict:
    env = dict(os.environ)
    for line in (ROOT / "deploy" / "production.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env.update(extra)
    return env


def worker_rss_mb(master_pid: int) -> dict[int, float]:
    """RSS of each child of the gunicorn master, in MB."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(master_pid):
            found[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    return found


class Load:
    """Shared counters of one phase."""

    def __init__(self):
        self.small_ms: list[float] = []
        self.by_path: dict[str, list[float]] = {}
        self.small_status = Counter()
        self.abuse_status = Counter()
        self.stalls_opened = 0
        self.lock = threading.Lock()


def small_reader(port, key, paths, stop_at, load: Load):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}
    i = 0
    while time.perf_counter() < stop_at:
        path = paths[i % len(paths)]
        i += 1
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = "conn-error"
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        with load.lock:
            load.small_ms.append(elapsed)
            load.by_path.setdefault(path.split("?")[0].rsplit("/", 1)[-1], []).append(elapsed)
            load.small_status[status] += 1
        time.sleep(0.01)  # a client that does something with what it read
    conn.close()


def stalled_stream(port, key, path, stop_at, load: Load):
    """Ask for a replay stream and never read it; ask again (every second) when refused."""
    while time.perf_counter() < stop_at:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {key}\r\n\r\n".encode())
        with load.lock:
            load.stalls_opened += 1
        # Peek at the status line only (a 429 comes back whole and small).
        sock.settimeout(5)
        try:
            head = sock.recv(64, socket.MSG_PEEK)
            status = int(head.split()[1]) if head.startswith(b"HTTP/") else "?"
        except (OSError, ValueError, IndexError):
            status = "no-answer"
        with load.lock:
            load.abuse_status[f"replay {status}"] += 1
        if status != 200:
            sock.close()
            time.sleep(1)
            continue
        # Hold it, reading nothing, to the end of the phase. The server
        # drops it after API_STREAM_SEND_TIMEOUT (its log says "timed out")
        # and frees its slot; this client does not notice and does not care.
        time.sleep(max(0.0, stop_at - time.perf_counter()))
        sock.close()


def bulk_abuser(port, key, paths, stop_at, load: Load):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {key}"}
    i = 0
    while time.perf_counter() < stop_at:
        path = paths[i % len(paths)]
        i += 1
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = "conn-error"
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        with load.lock:
            load.abuse_status[f"{path.split('?')[0].rsplit('/', 1)[-1]} {status}"] += 1
    conn.close()


def run_phase(name, port, args, small_keys, abuse_keys, small_paths, stall_path, bulk_paths,
              master_pid, abuse: bool) -> dict:
    load = Load()
    stop_at = time.perf_counter() + args.seconds
    threads = [threading.Thread(target=small_reader, args=(port, k, small_paths, stop_at, load))
               for k in small_keys]
    if abuse:
        threads += [threading.Thread(target=stalled_stream,
                                     args=(port, abuse_keys[i % 2], stall_path, stop_at, load))
                    for i in range(args.stalled)]
        threads += [threading.Thread(target=bulk_abuser,
                                     args=(port, abuse_keys[i % 2], bulk_paths[i:] + bulk_paths[:i],
                                           stop_at, load))
                    for i in range(args.bulk)]
    peak, peak_total = 0.0, 0.0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss = worker_rss_mb(master_pid)
        if rss:
            peak = max(peak, max(rss.values()))
            peak_total = max(peak_total, sum(rss.values()))
        time.sleep(0.5)
    for t in threads:
        t.join()
    statuses = Counter({str(k): v for k, v in load.small_status.items()})
    fives = sum(v for k, v in load.small_status.items() if isinstance(k, int) and k >= 500)
    fives += sum(v for k, v in load.abuse_status.items() if k.split()[-1].startswith("5"))
    result = {
        "phase": name, "small_requests": len(load.small_ms),
        "p50": pct(load.small_ms, 50), "p99": pct(load.small_ms, 99),
        "max": max(load.small_ms) if load.small_ms else float("nan"),
        "small_statuses": dict(statuses), "abuse": dict(load.abuse_status),
        "stalls_opened": load.stalls_opened, "peak_worker_mb": peak,
        "peak_workers_total_mb": peak_total, "5xx": fives,
    }
    print(f"\n{name}: {result['small_requests']} small reads, p50 {result['p50']:.1f} ms, "
          f"p99 {result['p99']:.1f} ms, max {result['max']:.1f} ms, statuses {dict(statuses)}")
    print("  by path: " + ", ".join(f"{p} p50 {pct(v, 50):.1f} / p99 {pct(v, 99):.1f} ms"
                                    for p, v in sorted(load.by_path.items())))
    if abuse:
        print(f"  abusive requests: {dict(sorted(load.abuse_status.items()))}")
        print(f"  stalled streams opened: {load.stalls_opened}")
    print(f"  peak worker RSS {peak:.0f} MB (all workers {peak_total:.0f} MB); 5xx: {fives}")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of each phase.")
    parser.add_argument("--clients", type=int, default=8, help="Small-read clients.")
    parser.add_argument("--stalled", type=int, default=4, help="Stalled replay streams.")
    parser.add_argument("--bulk", type=int, default=4, help="Clients of huge pages.")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers "
                        "(default: deploy/gunicorn.conf.py's 2 x CPUs + 1).")
    parser.add_argument("--send-timeout", type=int, default=30,
                        help="API_STREAM_SEND_TIMEOUT for the run (seconds).")
    parser.add_argument("--day", type=date.fromisoformat, help="UTC day (default: yesterday).")
    args = parser.parse_args(argv)

    setup_django()
    from django.db import connection

    from backtest_api.models import api_key_create

    day = args.day or (datetime.now(timezone.utc).date() - timedelta(days=1))
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    end = start + timedelta(days=1)
    hot = f"{DEFAULT_PREFIX}-HOT"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orderbook_deltas WHERE market_ticker = %s "
                       "AND received_at >= %s AND received_at < %s", [hot, start, end])
        have = cursor.fetchone()[0]
    if have < 1_000_000:
        generate_day(day=day)
    with connection.cursor() as cursor:
        cursor.execute("SELECT market_ticker FROM orderbook_snapshots WHERE market_ticker <> %s "
                       "AND market_ticker LIKE %s LIMIT 1", [hot, f"{DEFAULT_PREFIX}%"])
        quiet = cursor.fetchone()[0]
    iso = lambda dt: dt.isoformat().replace("+00:00", "Z")  # noqa: E731
    small_keys = [api_key_create(name=f"abuse-bench-small-{i}")[1] for i in range(args.clients)]
    abuse_keys = [api_key_create(name=f"abuse-bench-abuser-{i}")[1] for i in range(2)]
    small_paths = [
        "/api/v1/series?limit=10",
        f"/api/v1/markets/{quiet}",
        f"/api/v1/orderbook?market_ticker={quiet}&timestamp={iso(start + timedelta(hours=13))}",
        f"/api/v1/trades?market_ticker={hot}&start_time={iso(start + timedelta(hours=9))}"
        "&limit=100",
    ]
    stall_path = (f"/api/v1/replay?market_tickers={hot}&start_time={iso(start)}"
                  f"&end_time={iso(end)}")
    bulk_paths = [
        f"/api/v1/book_snapshots?market_ticker={hot}&start_time={iso(start)}"
        f"&end_time={iso(end)}&interval=90s&limit=1000&depth=100",
        f"/api/v1/coverage?market_ticker={hot}&start_date={day - timedelta(days=365)}"
        f"&end_date={day}",
        f"/api/v1/orderbook?market_ticker={hot}&timestamp={iso(end - timedelta(seconds=1))}"
        "&depth=1000",
        f"/api/v1/candles/{hot}?interval=1d&start_time={iso(start - timedelta(days=365))}"
        f"&end_time={iso(end)}",
    ]

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        env = production_env(
            DATABASE_URL=database_url(), REDIS_URL=redis_url, ALLOWED_HOSTS="127.0.0.1",
            SECURE_SSL_REDIRECT="0", LOG_LEVEL="ERROR", GUNICORN_BIND=f"127.0.0.1:{port}",
            API_STREAM_SEND_TIMEOUT=str(args.send_timeout),
            PROMETHEUS_MULTIPROC_DIR=str(Path(tmp) / "metrics"),
        )
        if args.workers:
            env["GUNICORN_WORKERS"] = str(args.workers)
        gunicorn = Path(sys.executable).parent / "gunicorn"
        server = subprocess.Popen(
            [str(gunicorn), "-c", "deploy/gunicorn.conf.py", "--access-logfile", "/dev/null",
             "kalshi_data.wsgi:application"], cwd=ROOT, env=env)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("gunicorn did not start")
                time.sleep(0.3)
            workers = len(worker_rss_mb(server.pid))
            print(f"gunicorn: {workers} gthread workers on 127.0.0.1:{port}; day {day}, "
                  f"hot market {hot}; {args.clients} small-read clients, {args.stalled} "
                  f"stalled streams, {args.bulk} bulk clients, {args.seconds:.0f} s a phase")
            # Warm every worker a little.
            run_phase("warm-up", port, argparse.Namespace(**{**vars(args), "seconds": 5}),
                      small_keys, abuse_keys, small_paths, stall_path, bulk_paths, server.pid,
                      abuse=False)
            base = run_phase("without abuse", port, args, small_keys, abuse_keys, small_paths,
                             stall_path, bulk_paths, server.pid, abuse=False)
            abused = run_phase("with abuse", port, args, small_keys, abuse_keys, small_paths,
                               stall_path, bulk_paths, server.pid, abuse=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    ratio = abused["p99"] / base["p99"]
    print(f"\nsmall-read p99: {base['p99']:.1f} ms without abuse, {abused['p99']:.1f} ms with "
          f"({ratio:.2f}x; target <= 3x); p50 {base['p50']:.1f} -> {abused['p50']:.1f} ms")
    print(f"5xx: {base['5xx'] + abused['5xx']} (must be 0); peak worker RSS "
          f"{max(base['peak_worker_mb'], abused['peak_worker_mb']):.0f} MB")


if __name__ == "__main__":
    main()
