"""The simulator's WebSocket stream without a network: for pure tests and benchmarks.

`offline_stream()` plays one client that subscribes to `orderbook_delta` for
every market listed at the start, plus `trade` and `market_lifecycle_v2`,
and returns the frames it would receive (faults included, if asked) together
with the exchange, whose books are then the truth to compare against. Same
Session, same FaultInjector, same wire formats as the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .exchange import EngineConfig, Exchange
from .faults import FaultConfig, FaultInjector
from .session import Session
from kalshi.wire import CURRENT, LEGACY

DEFAULT_START_MS = 1_795_000_000_000  # 2026-11-18, a fixed clock: identical runs


@dataclass
class OfflineStream:
    frames: list[str]
    exchange: Exchange
    subscribed_tickers: list[str]


def offline_stream(
    *,
    seed: int = 0,
    markets: int = 100,
    steps: int = 10_000,
    start_ms: int = DEFAULT_START_MS,
    step_ms: int = 5,
    use_yes_price: bool = False,
    wire_format: str = CURRENT,
    faults: FaultConfig | None = None,
    engine: EngineConfig | None = None,
) -> OfflineStream:
    engine = engine or EngineConfig(markets=markets)
    if wire_format == LEGACY:
        engine = EngineConfig(**{**engine.__dict__, "whole_units_only": True})
    exchange = Exchange(seed=seed, start_ms=start_ms, config=engine)
    session = Session(exchange, wire_format)
    injector = FaultInjector(faults or FaultConfig(), seed=seed, connection=1)
    tickers = [t for t, m in exchange.markets.items() if m.status == "active"]
    frames: list[str] = []

    def send(out):
        for frame in out:
            if frame.data and frame.sid not in session.subscriptions:
                continue  # its subscription ended earlier in this batch
            decision = injector.decide(frame)
            if decision.terminal_sid is not None:
                out_error = session.end(decision.terminal_sid, injector.config.terminal_error_code)
                frames.extend(f.text() for f in out_error)
            frames.extend(decision.texts)

    command = {
        "id": 1,
        "cmd": "subscribe",
        "params": {
            "channels": ["orderbook_delta", "trade", "market_lifecycle_v2"],
            "market_tickers": tickers,
            "use_yes_price": use_yes_price,
        },
    }
    send(session.handle_command(json.dumps(command)))
    for i in range(steps):
        send(session.on_events(exchange.step(start_ms + i * step_ms)))
    return OfflineStream(frames, exchange, tickers)
