"""End to end: `kill -9` of the collector mid-stream, then a restart.

A real `manage.py collect` process records the simulator into its own
embedded PostgreSQL and is killed with SIGKILL while the exchange trades on.
The restarted collector must find the unclean stop and record the window as
a `crash` hole of every market (closed by each market's new snapshot), fetch
back from REST the trades made meanwhile (and those the killed process held
in memory), close the trade hole only then, and store nothing twice.
"""

import asyncio
import json
import shutil
import signal
import sys
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from simulator import Simulator

from .e2e import WAIT_S
from .test_end_to_end_db_outage import ROOT, Postgres, collector_env, run, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

MARKETS = 8


class Collect:
    """One `manage.py collect` process and its output."""

    def __init__(self, env: dict):
        self.env = env
        self.proc = None
        self.output: list[str] = []
        self._reader = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "collect", "--stats-every", "1", cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace"))

    def check_alive(self) -> None:
        if self.proc.returncode is not None:
            raise AssertionError("collector exited:\n" + "".join(self.output)[-3000:])

    async def wait(self) -> int:
        code = await asyncio.wait_for(self.proc.wait(), WAIT_S)
        await self._reader
        return code


async def test_kill_9_mid_stream_then_restart_records_the_hole_and_fetches_the_trades(tmp_path):
    pgdata = ROOT / "var" / f"test-crash-{uuid.uuid4().hex[:8]}"
    pgdata.parent.mkdir(exist_ok=True)
    pg = await asyncio.to_thread(Postgres, pgdata)
    sim = Simulator(seed=43, markets=MARKETS, rate=200)
    procs: list[Collect] = []
    try:
        urls = await sim.start(host="127.0.0.1", port=0)
        sim.pause()
        env = collector_env(pg, sim, urls, tmp_path, heartbeat_seconds="0.2")
        await run("manage.py", "migrate", "--no-input", env=env)
        await run("manage.py", "pgpartition", "--yes", env=env)

        def query(sql):
            return asyncio.to_thread(pg.query, sql)

        first = Collect(env)
        procs.append(first)
        await first.start()

        async def subscribed():
            first.check_alive()
            rows = await query("SELECT count(DISTINCT market_ticker) FROM orderbook_snapshots")
            return rows[0][0] >= MARKETS

        await wait_for(subscribed, "the first collector's snapshots")
        first_trade = len(sim.trades())
        sim.resume()
        await asyncio.sleep(1.5)
        first.proc.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        killed_at = datetime.now(timezone.utc)
        trades_at_kill = len(sim.trades())
        await asyncio.sleep(1.5)  # the exchange trades while nobody records
        assert len(sim.trades()) > trades_at_kill

        second = Collect(env)
        procs.append(second)
        await second.start()

        async def crash_holes_closed():
            # The book hole of every market recorded again (its first new
            # snapshot closes it; a market that closed or settled while nobody
            # recorded keeps its hole), and the trade hole once its backfill
            # succeeded.
            second.check_alive()
            rows = await query(
                "SELECT count(*) FILTER (WHERE recovered_at IS NULL AND (market_ticker = '' OR EXISTS ("
                "  SELECT 1 FROM orderbook_snapshots s WHERE s.market_ticker = g.market_ticker"
                "  AND s.received_at > g.detected_at))), count(*) "
                "FROM sequence_gaps g WHERE reason = 'crash'")
            return rows[0][1] > 0 and rows[0][0] == 0

        try:
            await wait_for(crash_holes_closed, "the crash holes to be closed")
        except AssertionError:
            gaps = await query("SELECT market_ticker, channel, reason, detected_at, recovered_at "
                               "FROM sequence_gaps ORDER BY id")
            raise AssertionError("\n".join(map(str, gaps)) + "\n" + "".join(second.output)[-4000:])
        sim.pause()
        await sim.drain()
        truth = {
            t.trade_id: [t.market_ticker, t.yes_price, t.no_price, t.count,
                         datetime.fromtimestamp(t.ts_ms / 1000, tz=timezone.utc)]
            for t in sim.trades()[first_trade:]
        }

        async def caught_up():
            second.check_alive()
            rows = await query("SELECT count(*) FROM trades")
            pending = await query("SELECT count(*) FROM trade_backfills WHERE status = 'pending'")
            return rows[0][0] >= len(truth) and pending[0][0] == 0

        await wait_for(caught_up, "every trade")
        second.proc.send_signal(signal.SIGTERM)
        assert await second.wait() == 0, "".join(second.output)[-3000:]
        log = "".join(second.output)
        assert "stopped uncleanly" in log, log[-3000:]

        # The window is a recorded hole of every market, from before the kill
        # until the market's first snapshot after the restart.
        crash_gaps = await query(
            "SELECT market_ticker, channel, detected_at, recovered_at FROM sequence_gaps "
            "WHERE reason = 'crash'")
        books = {g[0]: g for g in crash_gaps if g[1] == "orderbook_delta"}
        recorded_after = {r[0] for r in await query(
            f"SELECT DISTINCT market_ticker FROM orderbook_snapshots WHERE received_at > '{killed_at}'")}
        recorded_before = {r[0] for r in await query(
            f"SELECT DISTINCT market_ticker FROM orderbook_snapshots WHERE received_at < '{killed_at}'")}
        # Every market recorded before and after the kill has its hole ...
        assert recorded_before & recorded_after
        assert recorded_before & recorded_after <= set(books)
        for ticker, _, detected_at, recovered_at in books.values():
            assert detected_at < killed_at, ticker
            if ticker in recorded_after:
                assert recovered_at is not None and recovered_at > killed_at, ticker
            else:  # ... and one never recorded again keeps it open, honestly.
                assert recovered_at is None, ticker
        trade_holes = [g for g in crash_gaps if g[1] == "trade"]
        assert len(trade_holes) == 1 and trade_holes[0][2] < killed_at < trade_holes[0][3]
        # Every book row of the killed run lies before its hole began, or was
        # durable anyway (the journal was loaded by the restart).
        runs = await query("SELECT id, clean, recovered_from, flags FROM collector_runs ORDER BY id")
        assert [(r[1], r[2]) for r in runs] == [(False, None), (True, runs[0][0])]
        assert runs[1][3] == {"use_yes_price": False}

        dump = json.loads(await run(str(Path(__file__).with_name("dump_record.py")), env=env))
        stored = {t[0]: [t[1], Decimal(t[2]), Decimal(t[3]), Decimal(t[4]), datetime.fromisoformat(t[5])]
                  for t in dump["trades"]}
        assert len(dump["trades"]) == len(stored), "a trade is stored twice"
        assert stored == truth
        fetched_back = await query("SELECT count(*) FROM trades WHERE source <> 'ws'")
        assert fetched_back[0][0] > 0  # the trades made while nobody recorded
        for ticker, book in dump["books"].items():
            if ticker not in recorded_after:
                continue  # not recorded again: inside its open crash hole (checked above)
            true_book = sim.true_book(ticker)
            assert book["yes"] == sorted([str(p), str(s)] for p, s in true_book.yes.items()), ticker
            assert book["no"] == sorted([str(p), str(s)] for p, s in true_book.no.items()), ticker
            assert book["complete"], ticker
    finally:
        for proc in procs:
            if proc.proc is not None and proc.proc.returncode is None:
                proc.proc.kill()
                await proc.proc.wait()
        await sim.stop()
        try:
            await asyncio.to_thread(pg.stop)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(pgdata, ignore_errors=True)
