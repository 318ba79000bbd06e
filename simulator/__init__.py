"""A local exchange that speaks Kalshi's market-data protocol (REST + WebSocket).

It knows the true book of every market at every moment, which makes it the
ground truth of the collector's end-to-end tests. See docs/simulator.md.

This package is also a Django app (for `manage.py kalshi_sim`), and Django
imports it before the models are ready; so the names below are imported on
first use (PEP 562) rather than here.
"""

from importlib import import_module

_EXPORTS = {
    "EngineConfig": ".exchange",
    "Exchange": ".exchange",
    "FaultConfig": ".faults",
    "OfflineStream": ".offline",
    "offline_stream": ".offline",
    "Settlement": ".simulator",
    "Simulator": ".simulator",
    "SimulatorUrls": ".simulator",
    "SimulatorConfig": ".config",
    "realistic": ".config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
