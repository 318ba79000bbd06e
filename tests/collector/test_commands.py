"""`manage.py collect` and `manage.py backfill_trades`, run as real processes against the simulator."""

import asyncio
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from collector.db import run_db
from kalshi import auth
from simulator import EngineConfig, Simulator, SimulatorConfig
from markets.models import OrderbookSnapshot, Trade

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The test database, for a child process."""
    s = connection.settings_dict
    password = f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else ""
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{quote(s['USER'], safe='')}{password}@{quote(s['HOST'], safe='')}{port}/{s['NAME']}"


async def manage(*args: str, env: dict) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()[-3000:]
    return out.decode()


async def test_collect_for_chosen_markets_then_backfill_another(tmp_path):
    # No lifecycle changes: the chosen markets must still trade when the process starts.
    sim = Simulator(SimulatorConfig(engine=EngineConfig(markets=6, lifecycle_probability=0)), seed=8, rate=100)
    urls = await sim.start(host="127.0.0.1", port=0)
    try:
        key = tmp_path / "key.pem"
        key.write_bytes(auth.private_key_pem(sim.private_key))
        env = {
            **os.environ, "DEBUG": "1", "DATABASE_URL": await run_db(database_url),
            "KALSHI_REST_URL": urls.rest, "KALSHI_WS_URL": urls.ws,
            "KALSHI_API_KEY_ID": sim.key_id, "KALSHI_PRIVATE_KEY_PATH": str(key),
            "COLLECTOR_JOURNAL_DIR": str(tmp_path / "journal"),
        }
        tickers = sorted(t for t, m in sim.markets().items() if m.status == "active")
        chosen, other = tickers[:2], tickers[2]

        out = await manage("collect", "--markets", ",".join(chosen), "--duration", "2", env=env)
        assert "collector stopped" in out
        recorded = await run_db(lambda: set(
            OrderbookSnapshot.objects.values_list("market_ticker", flat=True).distinct()))
        assert recorded == set(chosen), out

        # The live run stored `other`'s trades too (the trade channel covers
        # every market); the backfill adds only the older ones.
        sim.pause()
        live = await run_db(lambda: Trade.objects.filter(market_ticker=other).count())
        assert live > 0
        start = datetime.now(timezone.utc) - timedelta(hours=12)
        out = await manage("backfill_trades", "--markets", other, "--start", start.isoformat(), env=env)
        truth = {t.trade_id for t in sim.trades() if t.market_ticker == other}
        stored = await run_db(lambda: set(
            Trade.objects.filter(market_ticker=other).values_list("trade_id", flat=True)))
        missing = [(t.trade_id, t.ts_ms, t.index) for t in sim.trades() if t.trade_id in truth - stored]
        assert truth and stored == truth, (missing, sim.cutoff_ms(), start, out)
        assert f"stored {len(truth) - live} new" in out
        again = await manage("backfill_trades", "--markets", other, "--start", start.isoformat(), env=env)
        assert "stored 0 new" in again
    finally:
        await sim.stop()
