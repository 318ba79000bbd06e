"""Prometheus metrics for the collector, fed by its stats line.

The collector already logs, every `--stats-every` seconds (10 by default),
one structured line: `collector stats frames_per_s=412.3
rows_written_per_s=405.0 ... gaps=0 lag_seconds=0.004 reconnects=0
markets=120` (collector/runner.py, `_stats_loop`). `StatsMetricsHandler`
is a logging handler on the `collector` logger (settings.LOGGING): it reads
each such line and sets one gauge per numeric field, `collector_<field>`
(frames/s, rows/s, lag, gaps, subscribed markets, journal and buffer
depths, reconnects... whatever the line holds). So the collector itself
needs no change, and a field it adds later is exported as it appears.

With COLLECTOR_METRICS_PORT set, the first stats line starts Prometheus'
HTTP server on that port (COLLECTOR_METRICS_ADDR, default 127.0.0.1):
`GET http://127.0.0.1:9108/metrics`. Only the collector process logs stats
lines, so the API's processes never open the port.
"""

from __future__ import annotations

import logging
import os
import re
import threading

from prometheus_client import CollectorRegistry, Gauge, start_http_server

STATS_PREFIX = "collector stats "
_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)=(\S+)")
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")

REGISTRY = CollectorRegistry()
_gauges: dict[str, Gauge] = {}
_lock = threading.Lock()
_server_started = False


def parse_stats_line(message: str) -> dict[str, float]:
    """The numeric fields of a stats line ({} for any other message)."""
    if not message.startswith(STATS_PREFIX):
        return {}
    values = {}
    for key, raw in _FIELD.findall(message[len(STATS_PREFIX):]):
        if raw in ("True", "False"):
            values[key] = float(raw == "True")
            continue
        try:
            values[key] = float(raw)
        except ValueError:
            continue  # text (a state name): not a gauge
    return values


def publish(values: dict[str, float]) -> None:
    """Set `collector_<field>` for every field (gauges made on first sight)."""
    with _lock:
        for key, value in values.items():
            name = "collector_" + _NAME_UNSAFE.sub("_", key)
            gauge = _gauges.get(name)
            if gauge is None:
                gauge = _gauges[name] = Gauge(
                    name, f"Collector stats field {key} (last stats line).", registry=REGISTRY
                )
            gauge.set(value)


def serve_once() -> int | None:
    """Start the metrics HTTP server if COLLECTOR_METRICS_PORT is set (once)."""
    global _server_started
    port = os.environ.get("COLLECTOR_METRICS_PORT", "").strip()
    with _lock:
        if _server_started or not port:
            return None
        _server_started = True
    start_http_server(int(port), addr=os.environ.get("COLLECTOR_METRICS_ADDR", "127.0.0.1"),
                      registry=REGISTRY)
    return int(port)


class StatsMetricsHandler(logging.Handler):
    """A logging handler that turns collector stats lines into gauges."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            values = parse_stats_line(record.getMessage())
            if values:
                serve_once()
                publish(values)
        except Exception:  # metrics must never break the collector
            self.handleError(record)
