"""Soak: the collector against a hostile exchange for minutes, killed now and then (not a test: it prints numbers).

    DEBUG=1 .venv/bin/python bench/soak.py [--markets 5000] [--minutes 10] [--kills 3] [--outages 2]

The simulator runs in this process (its truth is what the audit judges
against), with every fault on, in its realistic mode when it has one
(`simulator.config.realistic`). The collector is a real `manage.py collect`
process pointed at it and at a database of its own, created for the run on
the same PostgreSQL server (and dropped at the end unless --keep-db). The
collector is killed with SIGKILL --kills times at random moments and started
again --down seconds later; when the simulator can make maintenance outages,
--outages of them happen too.

At the end the exchange is paused, the collector is given --settle seconds
to finish its backfills and stopped cleanly, and the audit
(tests/collector/audit.py) compares the database with the truth. Printed:
frames/s, rows per table, gaps by reason, silent holes, trades missing or
duplicated, markets never recorded, the time to record every market again
after each restart and outage, and the collector's memory over time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import re
import signal
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.django_env import ROOT, database_url, setup_django  # noqa: E402

setup_django()

import psycopg  # noqa: E402
from django.db import connections  # noqa: E402

import simulator.config  # noqa: E402
from collector.db import run_db  # noqa: E402
from kalshi import auth  # noqa: E402
from simulator import EngineConfig, FaultConfig, Simulator, SimulatorConfig  # noqa: E402
from tests.collector.audit import Truth, audit  # noqa: E402

POLL_S = 1.0
RSS_EVERY_S = 5.0
STATS_EVERY_S = 5.0
_STATS = re.compile(r"collector (?:stats|stopped) .*?\bframes=(\d+)")
_LAG = re.compile(r"\blag_max_seconds=([\d.]+)")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--markets", type=int, default=5000)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--kills", type=int, default=3, help="SIGKILL the collector this many times")
    p.add_argument("--down", type=float, default=3.0, help="seconds a killed collector stays down")
    p.add_argument("--outages", type=int, default=2, help="maintenance outages (when the simulator has them)")
    p.add_argument("--outage-seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=200.0, help="exchange steps per second")
    p.add_argument("--lifecycle", type=float, default=0.02, help="chance per step of a lifecycle change")
    p.add_argument("--drop", type=float, default=0.002)
    p.add_argument("--duplicate", type=float, default=0.01)
    p.add_argument("--reorder", type=float, default=0.002)
    p.add_argument("--malformed", type=float, default=0.002)
    p.add_argument("--numeric", type=float, default=0.05)
    p.add_argument("--terminal", type=float, default=0.0005)
    p.add_argument("--disconnect-every", type=float, default=90.0, metavar="SECONDS")
    p.add_argument("--cap", type=int, default=1000, help="markets per subscription (realistic mode)")
    p.add_argument("--samples", type=int, default=10, help="audited instants per market")
    p.add_argument("--lag-ms", type=int, default=3000, help="receive lag the audit tolerates")
    p.add_argument("--settle", type=float, default=30.0, help="seconds for the collector to finish at the end")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-db", action="store_true", help="keep the run's database (its name is printed)")
    return p.parse_args()


def simulator_config(args) -> SimulatorConfig:
    faults = FaultConfig(
        drop_rate=args.drop, duplicate_rate=args.duplicate, reorder_rate=args.reorder,
        malformed_rate=args.malformed, numeric_rate=args.numeric, terminal_error_rate=args.terminal,
        disconnect_every_seconds=args.disconnect_every or None,
    )
    engine = EngineConfig(markets=args.markets, lifecycle_probability=args.lifecycle)
    realistic = getattr(simulator.config, "realistic", None)
    if realistic is None:
        return SimulatorConfig(seed=args.seed, engine=engine, faults=faults, rate=args.rate)
    base = realistic()
    faults = dataclasses.replace(base.faults, **{f.name: getattr(faults, f.name) for f in dataclasses.fields(FaultConfig)})
    known = {f.name for f in dataclasses.fields(base)}
    extra = {k: v for k, v in dict(market_cap_per_subscription=args.cap).items() if k in known}
    return realistic(seed=args.seed, engine=engine, faults=faults, rate=args.rate, **extra)


# -- a database of the run's own ---------------------------------------------------


def create_database() -> tuple[str, str]:
    """A fresh database on the server Django uses; return (name, url). Django now uses it."""
    base = database_url()
    name = f"soak_{os.getpid()}_{int(time.time())}"
    with _server() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    connections["default"].close()
    # Every thread's connection is built from this one dict.
    connections.settings["default"]["NAME"] = name
    return name, base.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    connections["default"].close()
    with _server() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _server():
    """An autocommit connection to the server's maintenance database."""
    db = connections["default"].settings_dict
    return psycopg.connect(host=db.get("HOST") or None, port=db.get("PORT") or None, user=db.get("USER") or None,
                           password=db.get("PASSWORD") or None, dbname="postgres", autocommit=True)


async def manage(env, *args) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{err.decode()[-2000:]}")


# -- the collector process ----------------------------------------------------------


class Collector:
    """`manage.py collect` as a child process: started, killed, its memory and log followed."""

    def __init__(self, env: dict, log_path: Path):
        self.env, self.log_path = env, log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.frames_done = 0  # frames of the lives that ended
        self.frames_live = 0  # frames of the current life (from its last stats line)
        self.lag_max = 0.0
        self.rss: list[tuple[float, int]] = []  # (seconds since the start, KiB)
        self.exits: list[int] = []
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "collect", "--stats-every", str(STATS_EVERY_S), cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read(self.proc))

    async def _read(self, proc) -> None:
        with self.log_path.open("a") as log:
            async for raw in proc.stdout:
                line = raw.decode(errors="replace")
                log.write(line)
                if match := _STATS.search(line):
                    self.frames_live = int(match.group(1))
                if match := _LAG.search(line):
                    self.lag_max = max(self.lag_max, float(match.group(1)))

    def _ended(self, code: int) -> None:
        self.exits.append(code)
        self.frames_done += self.frames_live
        self.frames_live = 0

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self._ended(await self.proc.wait())
        await self._reader

    async def stop(self, timeout: float = 120.0) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            print(f"soak: the collector did not stop within {timeout:.0f} s of SIGTERM: killed")
            self.proc.kill()
            code = await self.proc.wait()
        await self._reader
        self._ended(code)

    def sample_rss(self, since: float) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        self.rss.append((time.monotonic() - since, kib))


# -- measuring --------------------------------------------------------------------------


def _recorded_since(tickers: list[str], since: datetime) -> set[str]:
    from markets.models import OrderbookSnapshot, SnapshotSource

    return set(
        OrderbookSnapshot.objects.filter(market_ticker__in=tickers, received_at__gte=since)
        .exclude(source=SnapshotSource.REST).values_list("market_ticker", flat=True).distinct()
    )


def _recorded_before(since: datetime) -> set[str]:
    from markets.models import OrderbookSnapshot, SnapshotSource

    return set(
        OrderbookSnapshot.objects.filter(received_at__lt=since).exclude(source=SnapshotSource.REST)
        .values_list("market_ticker", flat=True).distinct()
    )


async def time_to_record_all(sim, since: datetime, limit: float, *, again: bool = False) -> float | None:
    """Seconds from `since` until every open market has a fresh snapshot (None: not within limit).

    With `again`, only the markets recorded before `since` count: how long a
    restart or an outage leaves the record blind. (Markets never recorded at
    all are the audit's business.)
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    before = await run_db(_recorded_before, since) if again else None
    while loop.time() < deadline:
        active = [t for t, m in sim.markets().items()
                  if m.status == "active" and not getattr(m, "mve_collection_ticker", None)
                  and (before is None or t in before)]
        if set(active) <= await run_db(_recorded_since, active, since):
            return round((datetime.now(timezone.utc) - since).total_seconds(), 1)
        await asyncio.sleep(POLL_S)
    return None


def _table_rows() -> dict:
    from django.db import connection

    counts = {}
    with connection.cursor() as cursor:
        for table in ("orderbook_deltas", "orderbook_snapshots", "trades", "sequence_gaps",
                      "lifecycle_events", "settlements"):
            try:
                cursor.execute(f"SELECT count(*) FROM {table}")
                counts[table] = cursor.fetchone()[0]
            except Exception:  # noqa: BLE001 - a table another branch renamed
                counts[table] = "?"
    return counts


def _gaps_by_reason() -> dict:
    from django.db.models import Count

    from markets.models import SequenceGap

    return {f"{c}/{r}": n for c, r, n in SequenceGap.objects.values_list("channel", "reason")
            .annotate(n=Count("id")).order_by("channel", "reason")}


# -- the run ------------------------------------------------------------------------------


async def soak(args, url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    sim = Simulator(simulator_config(args))
    collector = None
    try:
        urls = await sim.start(host="127.0.0.1", port=0)
        key_path = workdir / "key.pem"
        key_path.write_bytes(auth.private_key_pem(sim.private_key))
        env = {**os.environ, "DEBUG": "1", "DATABASE_URL": url, "KALSHI_REST_URL": urls.rest,
               "KALSHI_WS_URL": urls.ws, "KALSHI_API_KEY_ID": sim.key_id,
               "KALSHI_PRIVATE_KEY_PATH": str(key_path), "COLLECTOR_JOURNAL_DIR": str(workdir / "journal")}
        await manage(env, "migrate", "--no-input")
        await manage(env, "pgpartition", "--yes")
        print(f"soak: database {url.rsplit('/', 1)[1]}, simulator {urls.rest}, collector log {workdir / 'collector.log'}")
        print(f"soak: {args.markets} markets, {args.minutes} min, rate {args.rate}/s, "
              f"realistic={hasattr(simulator.config, 'realistic')}, kills {args.kills}, "
              f"outages {args.outages if hasattr(sim, 'outage') else '0 (the simulator cannot make one yet)'}")

        total = args.minutes * 60
        rng = random.Random(args.seed)
        events = sorted([(rng.uniform(0.1, 0.9) * total, "kill") for _ in range(args.kills)]
                        + ([(rng.uniform(0.1, 0.9) * total, "outage") for _ in range(args.outages)]
                           if hasattr(sim, "outage") else []))
        collector = Collector(env, workdir / "collector.log")
        began = time.monotonic()
        start = datetime.now(timezone.utc)
        await collector.start()
        recoveries: list[tuple[str, float, float | None]] = []  # (what, at s, seconds to record all)

        async def sample_memory():
            while True:
                collector.sample_rss(began)
                await asyncio.sleep(RSS_EVERY_S)

        memory = asyncio.create_task(sample_memory())

        async def measure(what: str, since: datetime, at: float, limit: float):
            seconds = None
            try:
                seconds = await time_to_record_all(sim, since, limit, again=what != "start")
            finally:  # cancelled at the end of the run: not within the run
                recoveries.append((what, at, seconds))
                print(f"soak: {what} at {at:.0f} s: recorded again after {seconds} s")

        # Not awaited: the kills and outages keep their schedule even when
        # the collector never manages to record every market.
        measuring: list[asyncio.Task] = [asyncio.create_task(measure("start", start, 0.0, total))]
        for at, what in events:
            await asyncio.sleep(max(0.0, at - (time.monotonic() - began)))
            now = time.monotonic() - began
            if what == "kill":
                await collector.kill()
                print(f"soak: {now:.0f} s: collector killed (SIGKILL)")
                await asyncio.sleep(args.down)
                back = datetime.now(timezone.utc)
                await collector.start()
            else:
                trigger = sim.outage(args.outage_seconds)
                if asyncio.iscoroutine(trigger):
                    trigger = asyncio.ensure_future(trigger)
                print(f"soak: {now:.0f} s: exchange outage of {args.outage_seconds} s")
                await asyncio.sleep(args.outage_seconds)
                back = datetime.now(timezone.utc)
            measuring.append(asyncio.create_task(measure(what, back, now, limit=max(60.0, total - now))))
        await asyncio.sleep(max(0.0, total - (time.monotonic() - began)))

        sim.pause()
        end = datetime.now(timezone.utc)
        if getattr(sim, "in_outage", lambda: False)():
            # The realistic exchange's own maintenance outage (outage_every_s)
            # may be under way: the end of the run is not one, or the
            # collector could not fetch back the trades of its window.
            sim.end_outage()
            print("soak: the exchange's own outage ended at the end of the run")
        print(f"soak: exchange paused after {time.monotonic() - began:.0f} s; collector settling {args.settle} s")
        await asyncio.sleep(args.settle)
        for task in measuring:
            task.cancel()
        await asyncio.gather(*measuring, return_exceptions=True)
        memory.cancel()
        ran = time.monotonic() - began
        # A first start owes nothing from before it had subscribed: the audit
        # judges the record from the moment every market was in (or from the
        # start, when that moment never came).
        first = next(seconds for what, _, seconds in recoveries if what == "start")
        audit_start = start + timedelta(seconds=first or 0.0)
        if first is None:
            print("soak: the collector never recorded every market: auditing from its start")
        await collector.stop()
        print(f"soak: collector exit codes {collector.exits}")

        audit_began = time.monotonic()
        truth = Truth.from_simulator(sim)
        result = await run_db(audit, truth, audit_start, end, samples_per_market=args.samples, lag_ms=args.lag_ms,
                              edges_per_market=args.samples)
        audit_s = time.monotonic() - audit_began
        rows, gaps = await run_db(_table_rows), await run_db(_gaps_by_reason)
        report(args, collector, ran, rows, gaps, recoveries, result, audit_s, len(truth.trades))
    finally:
        if collector is not None and collector.proc is not None and collector.proc.returncode is None:
            collector.proc.kill()
            await collector.proc.wait()
        await sim.stop()


def report(args, collector, ran, rows, gaps, recoveries, result, audit_s, trades_made) -> None:
    frames = collector.frames_done + collector.frames_live
    print()
    print(f"== soak: {args.markets} markets, {ran:.0f} s, {args.kills} kills, rate {args.rate} steps/s ==")
    print(f"frames received: {frames} ({frames / ran:.0f}/s; from the collector's stats lines, "
          f"up to {STATS_EVERY_S:.0f} s short per killed life); max receive lag {collector.lag_max} s")
    print(f"rows: {rows}")
    print(f"gaps by channel/reason: {gaps}")
    for what, at, seconds in sorted(recoveries, key=lambda r: r[1]):
        whom = "every market" if what == "start" else "every market recorded before it"
        print(f"{what} at {at:.0f} s: {whom} recorded after "
              + (f"{seconds} s" if seconds is not None else "NEVER (within the run)"))
    points = collector.rss
    step = max(1, len(points) // 12)
    print("collector RSS (s: MiB): " + ", ".join(f"{t:.0f}: {kib / 1024:.0f}" for t, kib in points[::step])
          + (f"; max {max(k for _, k in points) / 1024:.0f} MiB" if points else ""))
    print(f"audit ({audit_s:.0f} s):")
    print(result.summary())
    print(f"SILENT HOLES {result.silent_holes} (must be 0), TRADES MISSING {result.trades_missing} (must be 0), "
          f"duplicated {result.trades_duplicated}, markets unrecorded {result.markets_unrecorded}")


def main() -> None:
    args = parse_args()
    name, url = create_database()
    try:
        asyncio.run(soak(args, url))
    finally:
        if args.keep_db:
            print(f"soak: kept database {name}")
        else:
            drop_database(name)


if __name__ == "__main__":
    main()
