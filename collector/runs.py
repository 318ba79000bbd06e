"""Crash safety: which run is recording, how far its rows are durable, how it stopped.

Every start of the collector is a run. Its facts live in two places:

* the **state file** `collector-run.json` in the journal directory, written
  atomically (fsync, rename, fsync of the directory) at start, every
  `heartbeat_seconds`, and after a clean stop. It needs no database, so a
  start after a crash knows at once (before any new frame is read) which
  markets the last run was recording and up to when its rows were durable
  (the *durable watermark*: every row received before it is in the journal
  or in PostgreSQL).
* the table `collector_runs` (markets.models.CollectorRun), written through
  the writer (so in order with the rows, and journaled while PostgreSQL is
  away): start, flags, markets, watermark, clean-shutdown marker.

A start that finds the state file without its clean-shutdown marker records
the crash: a `crash` hole for every market the last run was recording (a
`writer_failure` hole if that run died because it could store nothing),
from the durable watermark until each market's first snapshot of this run,
and a channel-wide `crash` hole on `trade`, closed once its REST backfill
has succeeded (collector/backfill.py).

One journal directory belongs to one collector process: it names the
collector (`instance`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from django.db import connection

from markets.models import GapReason

log = logging.getLogger(__name__)

STATE_FILE = "collector-run.json"
BOOK = "orderbook_delta"
TRADE = "trade"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class RunState:
    """What the state file holds."""

    run_id: int
    instance: str
    started_at: str
    durable_at: str
    markets: list[str] = field(default_factory=list)
    clean: bool = False
    failure: str = ""  # why the writer gave up, when it did


def state_path(journal_dir: Path) -> Path:
    return Path(journal_dir) / STATE_FILE


def state_read(journal_dir: Path) -> RunState | None:
    """The last run's state, or None (first start; an unreadable file is logged)."""
    path = state_path(journal_dir)
    try:
        data = json.loads(path.read_text())
        return RunState(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.error("collector run state %s unreadable (%s); assuming a crash of unknown extent", path, exc)
        return RunState(0, "", "", "", [], False, "")


def state_write(journal_dir: Path, state: RunState) -> None:
    """Replace the state file atomically; raises OSError (disk full, read-only)."""
    path = state_path(journal_dir)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(state.__dict__, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class Crash:
    """An unclean stop found at start: the hole to record."""

    run_id: int
    since: datetime | None  # the durable watermark (None: unknown, the state was unreadable)
    markets: list[str]
    reason: str  # GapReason value


def crash_of(previous: RunState | None) -> Crash | None:
    """The crash the previous run's state reveals, if it did not stop cleanly."""
    if previous is None or previous.clean:
        return None
    since = datetime.fromisoformat(previous.durable_at) if previous.durable_at else None
    reason = GapReason.WRITER_FAILURE.value if previous.failure else GapReason.CRASH.value
    return Crash(previous.run_id, since, list(previous.markets), reason)


def crash_record(writer, crash: Crash, now: datetime) -> list[tuple]:
    """Open the crash's holes through the writer; return the trade hole's key.

    Book holes are closed by each market's first snapshot of this run (the
    pipeline closes every open gap of a ticker on its first snapshot); the
    trade hole by its backfill. Returns [(ticker, channel, session, detected_at)].
    """
    since = crash.since or now
    for ticker in sorted(crash.markets):
        writer.open_gap((ticker, BOOK, crash.reason, crash.run_id, None, None, None, since, None, []))
    writer.open_gap(("", TRADE, crash.reason, crash.run_id, None, None, None, since, None, []))
    log.error(
        "collector: the last run (%s) stopped uncleanly (%s); recorded holes for %d markets "
        "and the trade channel since %s", crash.run_id, crash.reason, len(crash.markets),
        since.isoformat(),
    )
    return [("", TRADE, crash.run_id, since)]


# --- the collector_runs table, written through the writer ---------------------


def op_start(run_id: int, instance: str, started_at: datetime, flags: dict,
             recovered_from: int | None) -> tuple:
    return ("start", {"id": run_id, "instance": instance, "started_at": started_at.isoformat(),
                      "flags": flags, "recovered_from": recovered_from})


def op_markets(run_id: int, markets) -> tuple:
    return ("markets", {"id": run_id, "markets": sorted(markets)})


def op_watermark(run_id: int, at: datetime) -> tuple:
    return ("watermark", {"id": run_id, "at": at.isoformat()})


def op_stop(run_id: int, at: datetime, clean: bool, reason: str) -> tuple:
    return ("stop", {"id": run_id, "at": at.isoformat(), "clean": clean, "reason": reason})


_SQL = {
    "start": (
        "INSERT INTO collector_runs (id, instance, started_at, flags, recovered_from, markets, "
        "clean, stop_reason) VALUES (%(id)s, %(instance)s, %(started_at)s, %(flags)s, "
        "%(recovered_from)s, '{}', false, '') ON CONFLICT (id) DO NOTHING"
    ),
    "markets": "UPDATE collector_runs SET markets = %(markets)s WHERE id = %(id)s",
    "watermark": (
        "UPDATE collector_runs SET durable_at = GREATEST(durable_at, %(at)s::timestamptz) "
        "WHERE id = %(id)s"
    ),
    "stop": (
        "UPDATE collector_runs SET stopped_at = %(at)s, clean = %(clean)s, stop_reason = %(reason)s "
        "WHERE id = %(id)s"
    ),
}


def runs_apply(ops) -> int:
    """Apply run ops (kind, params) in order; the writer calls it inside its batch transaction."""
    with connection.cursor() as cursor:
        for kind, params in ops:
            if kind == "start":
                params = {**params, "flags": json.dumps(params["flags"])}
            cursor.execute(_SQL[kind], params)
    return 0  # bookkeeping, not recorded rows


# --- one run, from start to stop ---------------------------------------------


@dataclass
class Run:
    """This process's run: what the runner needs to start, beat and stop it."""

    run_id: int
    instance: str
    started_at: datetime
    crash: Crash | None
    crash_trade_gaps: list[tuple]
    journal_dir: Path
    markets: frozenset = frozenset()
    state_failing: bool = False
    # The markets the last run in this journal directory was recording: their
    # crash or disconnect holes already cover the time since it stopped.
    previous_markets: frozenset = frozenset()

    def state(self, writer, markets, *, clean: bool = False, failure: str = "") -> RunState:
        durable = writer.durable_at
        if durable is None:
            # Nothing of this run is durable yet, not even the crash holes
            # just opened: a crash now must still cover the last run's window.
            durable = self.crash.since if self.crash and self.crash.since else self.started_at
            markets = set(markets) | set(self.crash.markets if self.crash else ())
        return RunState(self.run_id, self.instance, self.started_at.isoformat(), durable.isoformat(),
                        sorted(markets), clean, failure)


def run_begin(config, writer, now: datetime | None = None) -> Run:
    """Start a run: find and record the last run's crash, write the new state.

    Raises OSError when the state file cannot be written: without it a crash
    of this run would go unrecorded, so the collector must not run (it
    exits non-zero, loudly).
    """
    now = now or _utcnow()
    journal_dir = Path(config.journal_dir)
    instance = str(journal_dir.resolve())
    previous = state_read(journal_dir)
    crash = crash_of(previous)
    run = Run(int(now.timestamp() * 1_000_000), instance, now, crash, [], journal_dir)
    if previous is not None:
        run.previous_markets = frozenset(previous.markets)
    try:
        state_write(journal_dir, run.state(writer, ()))
    except OSError as exc:
        log.critical("collector: cannot write the run state in %s (%s); refusing to run without "
                     "crash safety", journal_dir, exc)
        raise
    writer.run_id = run.run_id
    flags = {"use_yes_price": config.use_yes_price}
    writer.add_run_op(op_start(run.run_id, instance, now, flags, crash.run_id if crash else None))
    if crash is not None:
        run.crash_trade_gaps = crash_record(writer, crash, now)
    return run


def run_beat(run: Run, writer, markets) -> None:
    """Every heartbeat: the markets being recorded (when changed) and the watermark to the state file."""
    markets = frozenset(markets)
    if markets != run.markets:
        writer.add_run_op(op_markets(run.run_id, markets))
        run.markets = markets
    try:
        state_write(run.journal_dir, run.state(writer, markets))
    except OSError as exc:
        if not run.state_failing:
            log.critical("collector: cannot update the run state in %s (%s); a crash now "
                         "would be recorded from an older watermark", run.journal_dir, exc)
        run.state_failing = True
    else:
        run.state_failing = False


def run_end(run: Run, writer, markets, *, clean: bool, failure: str = "") -> None:
    """After the writer's last flush: the clean-shutdown marker (or the failure) to the state file."""
    try:
        state_write(run.journal_dir, run.state(writer, markets, clean=clean, failure=failure))
    except OSError as exc:
        log.critical("collector: cannot write the run state in %s (%s); the next start will "
                     "record this stop as a crash", run.journal_dir, exc)
