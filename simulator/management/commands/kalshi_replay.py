"""Serve our recorded history as Kalshi: WebSocket and REST at a replay clock (simulator/recorded.py)."""

import asyncio
import signal
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils.dateparse import parse_datetime

from collector.db import run_db
from markets.models import Market
from simulator.devkey import DEV_KEY_ID, accepted_keys
from simulator.recorded import RecordedExchange, ReplayClock, replay_simulator, run_replay

STATS_EVERY_SECONDS = 10.0


def _instant(text: str, name: str) -> datetime:
    value = parse_datetime(text)
    if value is None or value.tzinfo is None:
        raise CommandError(f"{name}: an ISO 8601 instant with a time zone, e.g. 2026-11-23T00:00:00Z")
    return value


class Command(BaseCommand):
    help = (
        "Replay recorded history over Kalshi's WebSocket (/trade-api/ws/v2) and REST (/trade-api/v2), "
        "at any speed, so a bot written for Kalshi runs on it unchanged."
    )

    def add_arguments(self, parser):
        parser.add_argument("--start", required=True, help="First instant replayed (ISO 8601, e.g. 2026-11-23T00:00:00Z).")
        parser.add_argument("--end", required=True, help="End of the window, exclusive (ISO 8601).")
        parser.add_argument("--markets", default="", help="Comma-separated market tickers (default: every recorded market).")
        parser.add_argument("--series", default="", help="Comma-separated series tickers: their markets.")
        parser.add_argument(
            "--speed", type=float, default=1.0,
            help="Replay-clock seconds per wall-clock second; 0 replays as fast as the clients read (default 1).",
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8766, help="0 picks a free port (default 8766).")
        parser.add_argument("--key-id", default=None, help="Key id accepted with --public-key.")
        parser.add_argument("--public-key", default=None, help="PEM file of an accepted RSA public key.")
        parser.add_argument(
            "--dev-key", default=None,
            help=f"PEM private key to accept as key id '{DEV_KEY_ID}'; created if missing.",
        )
        parser.add_argument(
            "--exit-at-end", action="store_true",
            help="Stop once the window has been replayed (default: keep serving its last instant).",
        )

    def handle(self, *args, **o):
        start, end = _instant(o["start"], "--start"), _instant(o["end"], "--end")
        if end <= start:
            raise CommandError("--end must be after --start")
        if o["speed"] < 0:
            raise CommandError("--speed must be >= 0")
        try:
            keys = accepted_keys(key_id=o["key_id"], public_key=o["public_key"], dev_key=o["dev_key"],
                                 write=self.stdout.write)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        tickers = self._tickers(o)
        if not tickers:
            raise CommandError("no recorded market matches --markets/--series")
        asyncio.run(self._serve(tickers, start, end, keys, o))

    def _tickers(self, o) -> list[str]:
        markets = Market.objects.all()
        chosen = [t for t in o["markets"].split(",") if t]
        series = [s for s in o["series"].split(",") if s]
        if chosen:
            unknown = set(chosen) - set(markets.filter(ticker__in=chosen).values_list("ticker", flat=True))
            if unknown:
                raise CommandError(f"--markets: not recorded: {', '.join(sorted(unknown))}")
        if chosen or series:
            markets = markets.filter(Q(ticker__in=chosen) | Q(series_ticker__in=series))
        return list(markets.order_by("ticker").values_list("ticker", flat=True))

    async def _serve(self, tickers, start, end, keys, o) -> None:
        exchange = await run_db(RecordedExchange, tickers, start, end)
        clock = ReplayClock(exchange.start_us, o["speed"])
        sim = replay_simulator(exchange, clock, accepted_keys=keys)
        urls = await sim.start(host=o["host"], port=o["port"])
        speed = "as fast as clients read" if not o["speed"] else f"x{o['speed']:g}"
        self.stdout.write(
            f"Kalshi replay of {len(tickers)} markets, {start.isoformat()} to {end.isoformat()} ({speed}); "
            f"the clock starts when a client subscribes: REST {urls.rest}  WebSocket {urls.ws}"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        replay = asyncio.create_task(run_replay(sim, exchange, clock))
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                done, _ = await asyncio.wait({replay, stopping}, timeout=STATS_EVERY_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if replay in done:
                    replay.result()  # raise what stopped it
                    self.stdout.write(f"replay reached {end.isoformat()}: {len(exchange.trades)} trades")
                    if o["exit_at_end"]:
                        await sim.drain(timeout=60)
                        break
                    await stopping  # keep serving the last instant until stopped
                    break
                if not done:
                    at = datetime.fromtimestamp(exchange.clock_us / 1e6, timezone.utc).isoformat()
                    self.stdout.write(f"clock={at} connections={len(sim.connections)} trades={len(exchange.trades)}")
        finally:
            replay.cancel()
            stopping.cancel()
            await sim.stop()
            await asyncio.to_thread(exchange.close)
            self.stdout.write("Kalshi replay stopped.")
