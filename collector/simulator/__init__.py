"""A local exchange that speaks Kalshi's market-data protocol (REST + WebSocket).

It knows the true book of every market at every moment, which makes it the
ground truth of the collector's end-to-end tests. See docs/simulator.md.
"""

from .config import SimulatorConfig
from .exchange import EngineConfig, Exchange
from .faults import FaultConfig
from .offline import OfflineStream, offline_stream
from .simulator import Settlement, Simulator, SimulatorUrls

__all__ = [
    "EngineConfig",
    "Exchange",
    "FaultConfig",
    "OfflineStream",
    "Settlement",
    "Simulator",
    "SimulatorConfig",
    "SimulatorUrls",
    "offline_stream",
]
