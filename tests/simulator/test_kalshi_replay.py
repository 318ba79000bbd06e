"""`kalshi_replay`: our recorded history served back as Kalshi (simulator/recorded.py).

A session is recorded by the real collector from the simulator into
PostgreSQL, then served by the replay. A plain client, written only from
Kalshi's public docs (RSA-PSS signed handshake, subscribe, apply snapshots
and deltas, check seq), rebuilds from the replay the same books our
/api/v1/orderbook serves at the end of the window, and sees every trade.
"""

import asyncio
import base64
import bisect
import json
import os
import shutil
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.db.models import Max, Min
from rest_framework.test import APIClient

from backtest_api.models import api_key_create
from collector.db import run_db
from kalshi import auth
from markets.models import OrderbookDelta, OrderbookSnapshot, Trade
from simulator import FaultConfig, Simulator
from simulator.recorded import RecordedExchange, ReplayClock, replay_simulator, run_replay

from tests.collector.e2e import collector_config, finish_run, start_run
from tests.collector.test_commands import ROOT, database_url, manage
from tests.collector.test_end_to_end_db_outage import Postgres

from .record_timeline import timeline

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]

WAIT_S = 60.0


async def record(sim, tmp_path, seconds):
    await sim.start(host="127.0.0.1", port=0)
    try:
        run = await start_run(sim, collector_config(tmp_path))
        await asyncio.sleep(seconds)
        await finish_run(run)
    finally:
        await sim.stop()
    return run


async def manage_script(path, *args, env) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, path, *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


def window():
    """[first recorded book, one microsecond after the last recorded delta)."""
    start = OrderbookSnapshot.objects.aggregate(start=Min("received_at"))["start"]
    end = OrderbookDelta.objects.aggregate(end=Max("received_at"))["end"]
    return start, end + timedelta(microseconds=1)


# -- a plain client, from Kalshi's docs only ---------------------------------------------


def signed_headers(key_id, private_key, method, path):
    """KALSHI-ACCESS-* headers: RSA-PSS (SHA-256, salt = digest length) over timestamp + method + path."""
    stamp = str(int(time.time() * 1000))
    signature = private_key.sign(
        (stamp + method + path).encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    return {"KALSHI-ACCESS-KEY": key_id, "KALSHI-ACCESS-SIGNATURE": base64.b64encode(signature).decode(),
            "KALSHI-ACCESS-TIMESTAMP": stamp}


class PlainClient:
    """Keeps each market's book as Kalshi's docs describe: a snapshot replaces it, a delta adds to a level."""

    def __init__(self):
        self.books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
        self.trades: list[dict] = []
        self.last_seq: dict[int, int] = {}
        self.seq_gaps = 0
        self.frames = 0
        self.closed = None

    def on_message(self, message: dict) -> None:
        self.frames += 1
        sid, seq = message.get("sid"), message.get("seq")
        if seq is not None and sid is not None:
            if sid in self.last_seq and seq != self.last_seq[sid] + 1:
                self.seq_gaps += 1
            self.last_seq[sid] = seq
        body = message.get("msg") or {}
        kind = message.get("type")
        if kind == "orderbook_snapshot":
            self.books[body["market_ticker"]] = {
                side: {Decimal(p): Decimal(q) for p, q in body.get(f"{side}_dollars_fp", [])}
                for side in ("yes", "no")
            }
        elif kind == "orderbook_delta":
            side = self.books[body["market_ticker"]][body["side"]]
            price = Decimal(body["price_dollars"])
            size = side.get(price, Decimal(0)) + Decimal(body["delta_fp"])
            if size:
                side[price] = size
            else:
                side.pop(price, None)
        elif kind == "trade":
            self.trades.append(body)


async def plain_client_run(ws_url, key_id, private_key, tickers, done) -> PlainClient:
    client = PlainClient()
    headers = signed_headers(key_id, private_key, "GET", "/trade-api/ws/v2")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, headers=headers) as ws:
        await ws.send_str(json.dumps({"id": 1, "cmd": "subscribe", "params": {
            "channels": ["orderbook_delta"], "market_tickers": tickers}}))
        await ws.send_str(json.dumps({"id": 2, "cmd": "subscribe", "params": {"channels": ["trade"]}}))
        while True:
            try:
                frame = await ws.receive(timeout=0.5)
            except asyncio.TimeoutError:
                if done():
                    return client
                continue
            if frame.type != aiohttp.WSMsgType.TEXT:
                client.closed = frame
                return client  # the server closed the connection (the command checks it ended)
            client.on_message(json.loads(frame.data))


def api_books(tickers, at):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='replay')[1]}")
    stamp = at.isoformat().replace("+00:00", "Z")
    books = {}
    for ticker in tickers:
        body = api.get(f"/api/v1/orderbook?market_ticker={ticker}&timestamp={stamp}").json()["data"]
        assert body["complete"], (ticker, body)
        books[ticker] = {side: {Decimal(level["price"]): Decimal(level["quantity"]) for level in body[side]}
                         for side in ("yes", "no")}
    return books


async def test_a_plain_client_rebuilds_our_orderbook_from_the_replay(tmp_path):
    sim = Simulator(seed=21, markets=8, rate=200)
    run = await record(sim, tmp_path, seconds=2.0)
    tickers = sorted(run.start_markets)
    start, end = await run_db(window)

    # `manage.py kalshi_replay`, as a user runs it, as fast as the client reads.
    key_path = tmp_path / "dev-key.pem"
    key = auth.generate_private_key()
    key_path.write_bytes(auth.private_key_pem(key))
    env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1", "DATABASE_URL": await run_db(database_url)}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "kalshi_replay", "--start", start.isoformat(), "--end", end.isoformat(),
        "--markets", ",".join(tickers), "--speed", "0", "--port", "0", "--dev-key", str(key_path),
        "--exit-at-end", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = []
    try:
        while True:
            line = (await asyncio.wait_for(server.stdout.readline(), WAIT_S)).decode()
            assert line, "".join(output)
            output.append(line)
            if "WebSocket ws://" in line:
                ws_url = line.split("WebSocket ")[1].split()[0]
                break
        client = await asyncio.wait_for(plain_client_run(
            ws_url, "sim-dev-key", key, tickers, done=lambda: server.returncode is not None), WAIT_S)
        rest, _ = await asyncio.wait_for(server.communicate(), WAIT_S)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    output.append(rest.decode())
    assert server.returncode == 0, "".join(output)
    assert "replay reached" in "".join(output)

    assert client.seq_gaps == 0
    assert client.frames > 300
    expected = await run_db(api_books, tickers, end)
    assert client.books == expected
    stored = await run_db(lambda: sorted(Trade.objects.filter(
        market_ticker__in=tickers, received_at__gte=start, received_at__lt=end)
        .values_list("trade_id", flat=True)))
    assert stored and sorted(t["trade_id"] for t in client.trades) == stored


async def test_kalshi_replay_refuses_bad_arguments_clearly():
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": await run_db(database_url)}
    for args, message in (
        (["--start", "yesterday", "--end", "2026-11-23T00:00:00Z"], "--start: an ISO 8601 instant"),
        (["--start", "2026-11-23T01:00:00Z", "--end", "2026-11-23T00:00:00Z"], "--end must be after --start"),
        (["--start", "2026-11-23T00:00:00Z", "--end", "2026-11-24T00:00:00Z", "--dev-key", "/tmp/x.pem",
          "--markets", "NOPE"], "not recorded: NOPE"),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "kalshi_replay", *args, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode != 0 and message in out.decode(), out.decode()


# -- the round trip: record, replay, record the replay into a second database ------------


def _state_at(points, at_us):
    """The book in force at `at_us` on a timeline (the last change at or before it)."""
    index = bisect.bisect_right([p[0] for p in points], at_us) - 1
    return points[index][1] if index >= 0 else None


def _states_between(points, low_us, high_us):
    """Every book in force at some instant of [low_us, high_us]."""
    found = [_state_at(points, low_us)]
    found += [book for at, book in points if low_us < at <= high_us]
    return found


def _normal(book):
    return None if book is None else [[list(level) for level in side] for side in book]


async def test_round_trip_a_second_collector_records_the_same_history_holes_included(tmp_path):
    # A: the first collector records an exchange that drops frames, so the record has holes.
    sim = Simulator(seed=23, markets=8, rate=200, faults=FaultConfig(drop_rate=0.02))
    run = await record(sim, tmp_path / "a", seconds=3.0)
    tickers = sorted(run.start_markets)
    start, end = await run_db(window)
    a = await run_db(timeline, tickers, start, end, start, end)
    a_holes = {t: [p for p in points if p[1] is None] for t, points in a["books"].items()}
    assert sum(len(h) for h in a_holes.values()) >= 2, "the first record has no hole: the test proves nothing"

    # The second database, and the replay of A at twice the speed.
    pg = Postgres(tmp_path / "pg")
    try:
        env = {**os.environ, "DEBUG": "1", "DATABASE_URL": pg.url}
        await manage("migrate", "--no-input", env=env)
        await manage("pgpartition", "--yes", env=env)
        exchange = await run_db(RecordedExchange, tickers, start, end)
        clock = ReplayClock(exchange.start_us, speed=2.0)
        replay = replay_simulator(exchange, clock)
        urls = await replay.start(host="127.0.0.1", port=0)
        task = asyncio.create_task(run_replay(replay, exchange, clock))
        key = tmp_path / "key.pem"
        key.write_bytes(auth.private_key_pem(replay.private_key))
        env.update({
            "KALSHI_REST_URL": urls.rest, "KALSHI_WS_URL": urls.ws, "KALSHI_API_KEY_ID": replay.key_id,
            "KALSHI_PRIVATE_KEY_PATH": str(key), "COLLECTOR_JOURNAL_DIR": str(tmp_path / "b-journal"),
            "RAW_ARCHIVE_URL": str(tmp_path / "b-raw"), "COLLECTOR_FLUSH_SECONDS": "0.05",
            "COLLECTOR_BACKOFF_INITIAL": "0.05", "COLLECTOR_BACKFILL_MARGIN_SECONDS": "1",
            "COLLECTOR_BACKFILL_RETRY_INITIAL": "0.2",
        })
        # B: a second collector, a real `manage.py collect`, records the replay.
        collector = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "collect", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            await asyncio.wait_for(task, WAIT_S)
            await replay.drain()
            b_trades = lambda: pg.query(f"SELECT count(*) FROM trades WHERE market_ticker = ANY(ARRAY{tickers})")[0][0]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_S
            while b_trades() < len(a["trades"]) and loop.time() < deadline:
                await asyncio.sleep(0.2)  # trades lost in a disconnect come back by REST
            await asyncio.sleep(1.0)  # the last rows flushed
        finally:
            collector.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(collector.communicate(), WAIT_S)
            await replay.stop()
            exchange.close()
        assert collector.returncode == 0, out.decode()[-3000:]

        def to_b(a_us):  # B stamps with its wall clock; the replay clock maps it
            return int(clock.wall_at_replay(a_us) * 1e6)

        def to_a(b_us):
            return clock.replay_at_wall(b_us / 1e6)

        b_start = datetime.fromtimestamp(clock.segments[0][1] - 5, timezone.utc)
        b_end = datetime.now(timezone.utc)
        dump = await manage_script("tests/simulator/record_timeline.py", b_start.isoformat(), b_end.isoformat(),
                                   b_start.isoformat(), b_end.isoformat(),
                                   ",".join(tickers), env={**os.environ, "DEBUG": "1", "DATABASE_URL": pg.url})
        b = json.loads(dump)
    finally:
        try:
            await asyncio.to_thread(pg.stop)
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(tmp_path / "pg", ignore_errors=True)

    # Trades: the same, exactly.
    assert b["trades"] == a["trades"]
    # Books: every book B presents as complete is one A had within the replay's latency...
    lag_us = int(0.5e6 * clock.speed)
    checked = 0
    for ticker in tickers:
        a_points = [(at, _normal(book)) for at, book in a["books"][ticker]]
        for b_at, book in b["books"][ticker]:
            if book is None or not (exchange.start_us <= to_a(b_at) < exchange.end_us):
                continue
            a_at = to_a(b_at)
            assert _normal(book) in _states_between(a_points, a_at - lag_us, a_at), (ticker, b_at)
            checked += 1
        # ...and every instant inside a hole of A is inside a hole of B: never a silently wrong book.
        b_points = [(at, _normal(book)) for at, book in b["books"][ticker]]
        a_gaps = [(at, nxt) for (at, book), (nxt, _) in zip(a_points, a_points[1:] + [(exchange.end_us, None)])
                  if book is None and at >= exchange.start_us]
        for low, high in a_gaps:
            for a_at in (low + lag_us, (low + high) // 2):
                if low + lag_us < high:
                    assert _state_at(b_points, to_b(a_at)) is None, (ticker, low, high)
    # How much of the window each record covers (B's extra holes: its reconnects after A's holes).
    def hole_share(points):
        """The share of the window (replay time) a timeline spends in holes."""
        low, high = exchange.start_us, exchange.end_us
        inside = 0
        for (at, book), (nxt, _) in zip(points, points[1:] + [(high, None)]):
            if book is None:
                inside += max(0, min(nxt, high) - max(at, low))
        return inside / (high - low)

    a_share = sum(hole_share(a["books"][t]) for t in tickers) / len(tickers)
    b_share = sum(hole_share([(to_a(at), book) for at, book in b["books"][t]]) for t in tickers) / len(tickers)
    print(f"round trip: {checked} books of B checked; time in holes: A {a_share:.1%}, B {b_share:.1%}; "
          f"collector B: {out.decode().strip().splitlines()[-1][:400]}")
    assert checked > 100
