"""The simulator's settings, every number defined once."""

from __future__ import annotations

from dataclasses import dataclass, field

from .exchange import EngineConfig
from .faults import FaultConfig
from kalshi.wire import CURRENT, FORMATS

REPLY_SEQ_MODES = ("none", "consume", "peek", "mixed")

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
    # REST token bucket, in tokens per second (None: no limit); the bucket
    # holds two seconds of budget, as Kalshi's Basic tier does. A read costs
    # rest_read_tokens: Kalshi counts 10 a read against 200 tokens/s (Basic).
    rest_rate_per_s: float | None = 20.0
    rest_burst_seconds: float = 2.0
    rest_read_tokens: int = 1
    # Trades older than this, and markets settled before it, move to /historical.
    # The cutoff moves in whole steps (Kalshi's moves slowly too), so that a
    # client paging through a tier does not see a trade change tiers mid-way.
    historical_age_s: float = 3600.0
    historical_step_s: float = 3600.0
    # REST answers 404 for a market this long after its `created` message, as
    # Kalshi's does briefly (PROTOCOL.md 4.4); 0 serves it at once.
    new_market_rest_delay_s: float = 0.0
    heartbeat_seconds: float = 10.0
    # Accept permessage-deflate when a client offers it (the websockets
    # library does by default). A local replay turns it off: it costs more
    # CPU per frame than the frame's JSON.
    ws_compression: bool = True
    # Frames waiting for one connection beyond which its subscription gets error 25.
    outbound_queue_limit: int = 10_000

    # -- hostility (realistic() turns these on; PROTOCOL.md section 10) --------
    # A subscribe/add_markets that would leave one sid with more markets than
    # this gets error 26 and changes nothing (None: no cap).
    market_cap_per_subscription: int | None = None
    # WebSocket commands per second per connection (a token bucket holding
    # command_burst); beyond it a command gets error 27 and is not carried out.
    command_rate_per_s: float | None = None
    command_burst: int = 20
    # How replies (ok, unsubscribed, errors on a sid) treat the sid's seq:
    # "consume" takes the next number, "peek" shows the number the next data
    # frame will carry without taking it, "none" carries no seq, "mixed" draws
    # consume or peek per connection from the seed.
    reply_seq: str = "consume"
    # Lifecycle frames (market_lifecycle_v2, event_lifecycle,
    # multivariate_market_lifecycle) carry a seq; Kalshi's seem not to.
    lifecycle_seq: bool = True
    # update_subscription add_markets answered this late, or refused with error 18.
    add_markets_delay_s: float = 0.0
    add_markets_refuse_rate: float = 0.0
    # A maintenance outage every outage_every_s seconds (None: never) lasting
    # outage_duration_s: every connection closed, handshakes and REST answer
    # 503; the exchange keeps running. sim.outage(seconds) starts one now.
    outage_every_s: float | None = None
    outage_duration_s: float = 30.0
    # WebSocket handshakes answer 401 for this long after start (sim.refuse_auth()).
    auth_fail_until_s: float = 0.0

    def __post_init__(self):
        if self.wire_format not in FORMATS:
            raise ValueError(f"wire_format must be one of {FORMATS}")
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        if self.reply_seq not in REPLY_SEQ_MODES:
            raise ValueError(f"reply_seq must be one of {REPLY_SEQ_MODES}")
        if not 0.0 <= self.add_markets_refuse_rate <= 1.0:
            raise ValueError("add_markets_refuse_rate must be between 0 and 1")
        if self.market_cap_per_subscription is not None and self.market_cap_per_subscription < 1:
            raise ValueError("market_cap_per_subscription must be >= 1")
        if self.rest_read_tokens < 1:
            raise ValueError("rest_read_tokens must be >= 1")


# The hostile defaults (PROTOCOL.md section 10): what `kalshi_sim` serves
# unless --friendly, and what the hostile tests start from.
REALISTIC = dict(
    market_cap_per_subscription=1000,
    command_rate_per_s=10.0,
    command_burst=20,
    reply_seq="mixed",
    lifecycle_seq=False,
    add_markets_delay_s=0.5,
    add_markets_refuse_rate=0.05,
    outage_every_s=600.0,
    outage_duration_s=30.0,
    new_market_rest_delay_s=3.0,
    rest_rate_per_s=200.0,
    rest_read_tokens=10,
)
REALISTIC_COMBO_MARKETS = 200
REALISTIC_LIFECYCLE_PROBABILITY = 0.05  # markets created (and settled) continuously


def realistic(**overrides) -> "SimulatorConfig":
    """A SimulatorConfig as hostile as Kalshi; any field may be overridden.

    `engine` and `faults` may be overridden whole; the combo markets and the
    faster lifecycle are engine settings (EngineConfig.combo_markets,
    lifecycle_probability).
    """
    engine = overrides.pop(
        "engine",
        EngineConfig(combo_markets=REALISTIC_COMBO_MARKETS, lifecycle_probability=REALISTIC_LIFECYCLE_PROBABILITY),
    )
    return SimulatorConfig(**{**REALISTIC, "engine": engine, **overrides})
