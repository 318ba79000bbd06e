"""The simulator's settings, every number defined once."""

from __future__ import annotations

from dataclasses import dataclass, field

from .exchange import EngineConfig
from .faults import FaultConfig
from .wire import CURRENT, FORMATS

REST_PREFIX = "/trade-api/v2"
WS_PATH = "/trade-api/ws/v2"


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = 0
    engine: EngineConfig = field(default_factory=EngineConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    wire_format: str = CURRENT
    # Exchange steps per second while running (0: only sim.step() advances).
    rate: float = 20.0
    # Signatures: on by default. public_rest_unsigned lets unsigned requests
    # through to the public market-data endpoints (a signed one is still checked).
    require_signatures: bool = True
    public_rest_unsigned: bool = False
    # A signature whose timestamp is further than this from our clock is refused.
    max_clock_skew_s: float = 300.0
    # REST token bucket, in requests per second (None: no limit); the bucket
    # holds two seconds of budget, as Kalshi's Basic tier does.
    rest_rate_per_s: float | None = 20.0
    rest_burst_seconds: float = 2.0
    # Trades older than this, and markets settled before it, move to /historical.
    # The cutoff moves in whole steps (Kalshi's moves slowly too), so that a
    # client paging through a tier does not see a trade change tiers mid-way.
    historical_age_s: float = 3600.0
    historical_step_s: float = 3600.0
    # REST answers 404 for a market this long after its `created` message, as
    # Kalshi's does briefly (PROTOCOL.md 4.4); 0 serves it at once.
    new_market_rest_delay_s: float = 0.0
    heartbeat_seconds: float = 10.0
    # Frames waiting for one connection beyond which its subscription gets error 25.
    outbound_queue_limit: int = 10_000

    def __post_init__(self):
        if self.wire_format not in FORMATS:
            raise ValueError(f"wire_format must be one of {FORMATS}")
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
