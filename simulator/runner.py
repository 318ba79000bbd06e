"""Run a simulator until SIGINT/SIGTERM, logging a stats line now and then."""

from __future__ import annotations

import asyncio
import signal
from typing import Callable

from .simulator import Simulator

STATS_EVERY_SECONDS = 10.0


async def serve(sim: Simulator, host: str, port: int, *, write: Callable[[str], None] = print) -> None:
    urls = await sim.start(host=host, port=port)
    write(f"Kalshi simulator: REST {urls.rest}  WebSocket {urls.ws}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), STATS_EVERY_SECONDS)
            except asyncio.TimeoutError:
                ex = sim.exchange
                write(
                    f"steps={ex.steps} markets={len(ex.markets)} trades={len(ex.trades)} "
                    f"connections={len(sim.connections)} rest={sim.stats['rest_requests']} "
                    f"refused={sim.stats['unauthorized']} throttled={sim.stats['rate_limited']} "
                    f"outages={sim.stats['outages']} in_outage={sim.in_outage()}"
                )
    finally:
        await sim.stop()
        write("Kalshi simulator stopped.")
