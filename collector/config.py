"""Every number the collector runs by, defined once.

`CollectorConfig` is a frozen dataclass: the defaults below are the
documented values, `CollectorConfig.from_settings()` overrides them from
Django settings (`COLLECTOR_<FIELD>` in upper case) or, failing that, the
environment variable of the same name. Tests and benchmarks build one
directly with the fields they care about.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_journal_dir() -> Path:
    # Inside the project (git-ignored /var/), next to the embedded database.
    return Path(__file__).resolve().parent.parent / "var" / "journal"


def _default_raw_archive_url() -> str:
    # RAW_ARCHIVE_URL (a path or an object-store URL, or "off"); by default
    # inside the project, next to the journal (collector/raw_archive.py).
    return os.environ.get("RAW_ARCHIVE_URL") or str(
        Path(__file__).resolve().parent.parent / "var" / "raw"
    )


def _default_raw_archive_retention_days() -> int:
    return int(os.environ.get("RAW_ARCHIVE_RETENTION_DAYS") or 0)


@dataclass(frozen=True)
class CollectorConfig:
    # --- book checkpoints: a market's book is written whole after this many
    # deltas since its last baseline (so rebuilding it applies fewer), and at
    # its first delta of each UTC day (collector/pipeline.py, _on_delta).
    checkpoint_every_deltas: int = 500

    # --- writer: a batch is written when it reaches flush_rows rows or is
    # flush_seconds old; beyond max_buffered_rows rows waiting in memory the
    # writer spills them to the journal instead of growing.
    flush_rows: int = 5000
    flush_seconds: float = 0.5
    max_buffered_rows: int = 100_000
    journal_dir: Path = field(default_factory=_default_journal_dir)
    # After PostgreSQL fails, wait this long (doubling up to the max) before
    # trying it again; meanwhile batches go straight to the journal. The
    # actions worker (metadata, settlements, queuing backfills) uses the same.
    db_retry_initial: float = 0.5
    db_retry_max: float = 30.0
    # Write-ahead: every batch is appended to the journal (fsync) before it
    # is written to PostgreSQL, so a row is crash-safe once its batch is cut
    # (at most flush_seconds after it arrived), whatever PostgreSQL does.
    journal_write_ahead: bool = True
    # When nothing else is written, a batch carrying only the durable
    # watermark is cut this often, so a crash hole starts close to the crash.
    heartbeat_seconds: float = 1.0
    # Rows that can be neither journaled nor written (journal full or
    # read-only while PostgreSQL is away) are held in memory this long (and
    # at most max_buffered_rows); then the collector exits non-zero.
    writer_failure_exit_s: float = 30.0
    # The raw archive of every frame received (collector/raw_archive.py):
    # where ("off" to disable), and how many days `manage.py
    # prune_raw_archive` keeps (0: forever).
    raw_archive_url: str = field(default_factory=_default_raw_archive_url)
    raw_archive_retention_days: int = field(default_factory=_default_raw_archive_retention_days)

    # --- subscriptions. Kalshi's no-leg pricing is what we store; the I/O
    # layer sends this flag explicitly on every orderbook subscribe, because
    # Kalshi has announced that the default will flip.
    use_yes_price: bool = False
    subscribe_batch: int = 500
    # At most this many markets on one orderbook subscription, and on one
    # connection before another is opened (Kalshi caps them, error 26, and
    # publishes neither: a smaller cap learnt from Kalshi replaces these).
    # A lost frame costs a fresh snapshot of every book on its sid, so fewer
    # markets a connection bound that cost; 500 a connection is 50
    # connections for 25,000 markets, under Kalshi's 200 per user.
    max_markets_per_subscription: int = 1000
    max_markets_per_connection: int = 500
    # WS commands per second on one connection (Kalshi answers 27 beyond).
    command_rate_per_s: float = 8.0
    # A command unanswered this long is given up (and retried).
    command_timeout_seconds: float = 15.0
    # A market Kalshi refused is tried again after this (doubling to the max).
    refused_retry_initial: float = 5.0
    refused_retry_max: float = 300.0
    # A snapshot asked for and not received this long is asked for again.
    snapshot_retry_seconds: float = 1.0
    # The catalog (GET /markets) is listed again this often, besides after
    # every reconnect and every lifecycle gap. Lifecycle frames carry no seq,
    # so a lost `created` is found only by a listing: this bounds how long a
    # new market goes unrecorded. A relisting asks only for markets updated
    # since the last one: a page or two, 10 tokens each of Kalshi's 200 a
    # second (Basic tier).
    reconcile_every_s: float = 60.0
    # A listing sent right after a connect may not show yet the markets
    # created just before (Kalshi's REST lags its exchange for a moment; the
    # simulator hides them for new_market_rest_delay_s): list once more this
    # long after every connect of the lifecycle connection.
    relist_after_connect_s: float = 10.0
    # At a clean stop the catalog is listed once more (so that a market
    # created with its `created` lost gets its hole), for at most this long.
    final_reconcile_s: float = 15.0
    # multivariate ("combo") markets: "exclude" (mve_filter=exclude) or "include".
    combos: str = "exclude"

    # --- reconnects (exponential backoff with jitter) and REST pacing.
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_factor: float = 2.0
    rest_rate_per_s: float = 10.0
    # After a connection drops, try again at least this often (an outage ends
    # without notice: probe it instead of sleeping out a grown backoff).
    reconnect_probe_s: float = 2.0
    # A 401/403 on the handshake (key or clock wrong): retried this slowly.
    auth_retry_s: float = 60.0

    # --- trade backfill after a break on the trade channel: the window asked
    # for is widened by this much on both sides (our clock vs the exchange's).
    backfill_margin_seconds: float = 5.0
    # A trade hole's backfill is retried for as long as the hole is open:
    # each attempt is bounded (the REST client's own retries, and this
    # timeout), the pause between attempts doubles up to backfill_retry_max.
    backfill_retry_initial: float = 1.0
    backfill_retry_max: float = 60.0
    backfill_attempt_timeout_s: float = 600.0

    # --- logging: at most this many characters of a malformed frame's text.
    malformed_log_chars: int = 500

    @classmethod
    def from_settings(cls, **overrides) -> "CollectorConfig":
        """The config from Django settings / environment, then `overrides`."""
        from django.conf import settings

        values = {}
        for f in dataclasses.fields(cls):
            name = f"COLLECTOR_{f.name.upper()}"
            raw = getattr(settings, name, None)
            if raw is None:
                raw = os.environ.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f, raw)
        values.update(overrides)
        return cls(**values)


def _coerce(f: dataclasses.Field, raw):
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if not isinstance(raw, str):
        return Path(raw) if kind == "Path" else raw
    if kind == "bool":
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "Path":
        return Path(raw)
    return raw
