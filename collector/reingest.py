"""Rebuild the record of a time window from the raw archive, through the live pipeline.

`reingest()` (what `manage.py reingest` runs) reads the archive's hourly
files (collector/raw_archive.py) and feeds every frame and session event,
with its archived `received_at` stamp, to the very Pipeline code the
collector runs (collector/pipeline.py and its sequencer), one Pipeline per
archived connection, sharing one RecordState per collector process as live.
The stamps are replayed exactly, so the rows come out with the keys they
were stored with. The collector config the pipelines ran with is read from
the archive's hour headers, so checkpoints fall where they fell.

Where the replay begins. A book, a sid's sequence and a subscription's
tickers are known only from the start of their WebSocket session. The
header of the window's first hour names the sessions open then, with their
start; the replay of that collector begins with the hour of the earliest
of them, and the process-wide state (open holes, books baselined) comes
from that hour's header. Rows made before the window are discarded. A
session that began before that hour and ended before the window is not
replayed (its frames are skipped): its rows are outside the window. A
collector with no file for an hour while its sessions were open (a lost
file, or an hour with no frame at all) cannot be followed over that hole:
those sessions are abandoned, their later frames skipped and their rows
left as stored.

What is compared and repaired (the rule). Re-ingest owns only rows the
archive can reproduce; within [start, end) and the `markets` given:

* order-book deltas, and snapshots of source subscribe/resync/checkpoint,
  and lifecycle rows, of a session replayed from the archive, in an hour
  for which that collector's archive file exists;
* WebSocket trades (`source = 'ws'`) by `received_at`, in an hour where
  every replayed collector has its file (trades carry no session); a
  collector that writes to this database without archiving into the same
  root would see its WebSocket trades of the window removed, so run
  re-ingest on a root that holds every collector's archive;
* gaps the pipeline records (seq_gap, disconnect, terminal_error,
  malformed, subscribe_refused, not_subscribed, invalid_book) of a replayed
  session, by `detected_at`. Their `recovered_at` is set when the replay
  closed them; a gap still open at the end of the replay, and every trade
  hole (a REST backfill closes those), keeps its stored `recovered_at`.

An owned row the replay did not make, or made with other values, is
deleted; a row the replay made that is not stored is inserted (trades only
when their trade_id is not stored for the market, as live). Everything
else is never touched: REST trades and snapshots, settlements, crash
holes, session-0 holes (they are inserted if missing, never deleted), rows
outside the window or of other markets, rows of sessions the archive does
not know. On an untouched record nothing changes.

Memory is bounded: files are streamed; a collector's deltas, snapshots and
lifecycle rows are compared every CHUNK_ROWS rows (up to the frame just
replayed) and at the end of each of its hours; trades (few) once an hour;
only the gaps of the window are kept to the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from django.db import connection, transaction
from tqdm import tqdm

from markets import ingest
from markets.candles import lock_trade_writes, minute_of, refresh_bars
from markets.models import GapReason, SnapshotSource
from markets.record import compact, packs
from markets.record.schema import DELTAS, GAPS, LIFECYCLE, SNAPSHOTS, TRADES, RecordTable
from markets.objectstore import Location

from .config import CollectorConfig
from .pipeline import Pipeline, RecordState
from .raw_archive import (
    ReadStats,
    archive_files,
    frame_text,
    from_us,
    read_header,
    read_records,
    stream_of_path,
)

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
PIPELINE_GAP_REASONS = [
    GapReason.SEQ_GAP.value, GapReason.DISCONNECT.value, GapReason.TERMINAL_ERROR.value,
    GapReason.MALFORMED.value, GapReason.SUBSCRIBE_REFUSED.value,
    GapReason.NOT_SUBSCRIBED.value, GapReason.INVALID_BOOK.value,
]
WS_SNAPSHOT_SOURCES = [SnapshotSource.SUBSCRIBE.value, SnapshotSource.RESYNC.value,
                       SnapshotSource.CHECKPOINT.value]
TRADE_CHANNEL = "trade"
# The tables whose rows carry their session, compared per collector; and
# how many of their rows a replay keeps before comparing them (memory).
SESSION_TABLES = ("deltas", "snapshots", "lifecycle")
CHUNK_ROWS = 200_000
ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class _Table:
    """How re-ingest compares one table (its row shape: markets/record/schema.py)."""

    record: RecordTable
    time_column: str  # the window is on this column
    partitioned: bool
    owned: str  # SQL on `t`, with %(sessions)s
    insert_where: str = ""  # SQL on `s`, the staged rows

    @property
    def name(self) -> str:
        return self.record.db_table

    @property
    def columns(self) -> tuple[str, ...]:
        return self.record.columns

    @property
    def key(self) -> tuple[str, ...]:
        return self.record.identity


TABLES = {
    "deltas": _Table(
        DELTAS, "received_at", True,
        "t.session_id = ANY(%(sessions)s)",
    ),
    "snapshots": _Table(
        SNAPSHOTS, "received_at", True,
        "t.session_id = ANY(%(sessions)s) AND t.source = ANY(%(sources)s)",
    ),
    "lifecycle": _Table(
        LIFECYCLE, "received_at", False, "t.session_id = ANY(%(sessions)s)",
    ),
    "trades": _Table(
        TRADES, "received_at", True,
        # The ts bounds only let the planner prune partitions (trades are
        # partitioned by ts); a WebSocket trade arrives within seconds.
        "t.source = 'ws' AND %(trades_owned)s AND t.ts >= %(lo)s - interval '1 day' "
        "AND t.ts < %(hi)s + interval '1 day'",
        insert_where=("NOT EXISTS (SELECT 1 FROM trades t WHERE t.market_ticker = s.market_ticker"
                      " AND t.trade_id = s.trade_id)"),
    ),
}
_TIME_INDEX = {"deltas": DELTAS.index("received_at"), "snapshots": SNAPSHOTS.index("received_at"),
               "lifecycle": LIFECYCLE.index("received_at"), "trades": TRADES.index("received_at")}


@dataclass
class ReingestReport:
    """What a re-ingest read and what it changed."""

    streams: int = 0
    hours: int = 0
    records: int = 0
    frames: int = 0
    skipped: int = 0  # frames of sessions not replayed (begun before the replay)
    rows_rebuilt: Counter = field(default_factory=Counter)
    deleted: Counter = field(default_factory=Counter)
    inserted: Counter = field(default_factory=Counter)
    read: ReadStats = field(default_factory=ReadStats)

    @property
    def changed(self) -> int:
        return sum(self.deleted.values()) + sum(self.inserted.values())


class _Capture:
    """A Writer look-alike that keeps the rows a replay makes inside the window."""

    def __init__(self, start: datetime, end: datetime, markets: frozenset | None) -> None:
        self.start, self.end, self.markets = start, end, markets
        self.rows: dict[str, list] = {t: [] for t in TABLES}
        # Gaps of the window by key, and those still open by (ticker, channel).
        self.gaps: dict[tuple, list] = {}
        self._open: dict[tuple[str, str], list[list]] = {}

    def _keep(self, ticker: str, at: datetime) -> bool:
        return self.start <= at < self.end and (self.markets is None or ticker in self.markets)

    def add_delta(self, row: tuple) -> None:
        if self._keep(row[0], row[1]):
            self.rows["deltas"].append(row)

    def add_snapshot(self, row: tuple) -> None:
        if self._keep(row[0], row[1]):
            self.rows["snapshots"].append(row)

    def add_trade(self, row: tuple) -> None:
        if self._keep(row[0], row[10]):
            self.rows["trades"].append(row)

    def add_lifecycle(self, row: tuple) -> None:
        if self._keep(row[0], row[3]):
            self.rows["lifecycle"].append(row)

    def open_gap(self, row: tuple) -> None:
        ticker, channel, _, session, _, _, _, detected, _, _ = row
        if not self._keep(ticker, detected):
            return
        key = (ticker, channel, session, detected)
        if key in self.gaps:
            return  # ON CONFLICT DO NOTHING, as live
        gap = list(row)
        self.gaps[key] = gap
        if gap[8] is None:
            self._open.setdefault((ticker, channel), []).append(gap)

    def close_gap(self, market_ticker: str, channel: str, recovered_at: datetime) -> None:
        still = []
        for gap in self._open.pop((market_ticker, channel), ()):
            if gap[7] <= recovered_at:
                gap[8] = recovered_at
            else:
                still.append(gap)
        if still:
            self._open[(market_ticker, channel)] = still

    def close_gap_key(self, *args) -> None:  # REST backfills only; never in a replay
        pass

    def add_run_op(self, op) -> None:  # collector_runs bookkeeping: not the record
        pass

    def session_rows(self) -> int:
        rows = self.rows
        return len(rows["deltas"]) + len(rows["snapshots"]) + len(rows["lifecycle"])

    def take(self, tables) -> dict[str, list]:
        """The rows of `tables` made so far, forgotten here."""
        taken = {t: self.rows[t] for t in tables}
        for table in tables:
            self.rows[table] = []
        return taken


class _Replay:
    """One archived collector process replayed: its pipelines and record state."""

    def __init__(self, header: dict, capture: _Capture) -> None:
        self.config = _config_from(header.get("config"))
        self._now: datetime | None = None
        self.state = RecordState(clock=self._clock)
        self.state.gapped.update(header.get("gapped") or ())
        self.state.baselined.update(header.get("baselined") or ())
        if header.get("last") is not None:
            self.state.last_received = from_us(header["last"])
        self.capture = capture
        self.pipelines: dict[str, Pipeline] = {}
        self.sessions: set[int] = set()
        # Sessions that cannot be followed (an hour of their collector has no
        # file): their frames are skipped from then on, their rows left alone.
        self.abandoned: dict[int, datetime] = {}  # session -> the hour it was lost at

    def _clock(self) -> datetime:
        # Only start_session stamps from the clock in a replay: with its archived time.
        return self._now or datetime.now(timezone.utc)

    def _pipeline(self, connection_name: str) -> Pipeline:
        pipeline = self.pipelines.get(connection_name)
        if pipeline is None:
            pipeline = Pipeline(self.capture, self.config, state=self.state)
            self.pipelines[connection_name] = pipeline
        return pipeline

    def live_sessions(self) -> bool:
        return any(p.session_id is not None for p in self.pipelines.values())

    def abandon(self, hour: datetime) -> None:
        """This collector has no file of `hour` while sessions were open:
        a sequence cannot be followed over a hole in the archive."""
        for pipeline in self.pipelines.values():
            if pipeline.session_id is not None:
                log.warning("reingest: no archive file of %s for session %s; its rows from then "
                            "on are left as stored", hour.isoformat(), pipeline.session_id)
                self.abandoned[pipeline.session_id] = hour
        self.pipelines.clear()

    def feed(self, record: dict, report: ReingestReport) -> None:
        kind = record.get("k")
        name = str(record.get("c"))
        session = record.get("s")
        if kind == "f":
            pipeline = self.pipelines.get(name)
            if pipeline is None or session is None or pipeline.session_id != session:
                report.skipped += 1
                return
            report.frames += 1
            pipeline.handle(frame_text(record), from_us(record["at"]))
        elif kind == "start":
            pipeline = self._pipeline(name)
            self._now = from_us(record["at"])
            pipeline.start_session(session)
            self.sessions.add(session)
        elif kind == "hour" or kind is None:
            return
        else:
            pipeline = self._pipeline(name)
            if pipeline.session_id != session:
                return  # an event of a session not replayed
            at = from_us(record["at"]) if record.get("at") is not None else None
            if kind == "end":
                pipeline.end_session(at)
            elif kind == "expect":
                pipeline.expect_subscription(record["id"], record["ch"], record.get("t") or ())
            elif kind == "refused":
                pipeline.subscribe_refused(record["r"])
            elif kind == "opened":
                pipeline.market_opened(record["t"], at)
            elif kind == "missed":
                pipeline.market_missed(record["t"], at)
            else:
                log.warning("reingest: unknown archive record kind %r; skipped", kind)


def reingest(*, location: Location, start: datetime, end: datetime, markets=None,
             progress: bool = False) -> ReingestReport:
    """Rebuild [start, end) (of `markets`, or all) from the archive; see the module docstring."""
    if end <= start:
        raise ValueError("end must be after start")
    # The replay repeats every gap and malformed-frame warning the collector
    # logged when it recorded the frames: only errors are worth showing again.
    pipeline_log = logging.getLogger("collector.pipeline")
    level = pipeline_log.level
    pipeline_log.setLevel(logging.ERROR)
    try:
        return _reingest(location, start, end, frozenset(markets) if markets else None, progress)
    finally:
        pipeline_log.setLevel(level)


def _reingest(location: Location, start: datetime, end: datetime, markets: frozenset | None,
              progress: bool) -> ReingestReport:
    report = ReingestReport()
    capture = _Capture(start, end, markets)
    first_hour = _hour_floor(start)
    window_files = archive_files(location, start, end)
    # Where each collector's replay begins: its sessions open at the window start.
    begin: dict[str, datetime] = {}
    for hour in sorted(window_files):
        for relative, _ in window_files[hour]:
            stream = stream_of_path(relative)
            if stream in begin:
                continue
            begin[stream] = hour
            if hour == first_hour:
                header = read_header(location, relative) or {}
                for _, started_us in (header.get("open") or {}).values():
                    begin[stream] = min(begin[stream], _hour_floor(from_us(started_us)))
    report.streams = len(begin)
    if not begin:
        return report
    files = archive_files(location, min(begin.values()), end)
    replays: dict[str, _Replay] = {}
    hours = []
    hour = min(begin.values())
    while hour < end:
        hours.append(hour)
        hour += HOUR
    bar = tqdm(hours, desc="reingest", unit="h", disable=not progress)
    for hour in bar:
        present = set()
        skipped = report.skipped
        lo, hi = max(hour, start), min(hour + HOUR, end)
        for relative, _ in sorted(files.get(hour, ())):
            stream = stream_of_path(relative)
            if stream not in begin or hour < begin[stream]:
                continue
            records = read_records(location, relative, report.read)
            replay = replays.get(stream)
            if replay is None:
                first = next(records, None)
                if first is None:
                    continue
                replay = replays[stream] = _Replay(first if first.get("k") == "hour" else {}, capture)
                report.records += 1
                if first.get("k") != "hour":
                    replay.feed(first, report)
            fed = 0
            cursor = lo  # this collector's rows before it are compared already
            for record in records:
                fed += 1
                replay.feed(record, report)
                if capture.session_rows() >= CHUNK_ROWS and record.get("k") == "f" and lo < hi:
                    # Every row up to this frame's stamp is made: compare them now.
                    upto = min(max(from_us(record["at"]) + ONE_US, cursor), hi)
                    _repair_sessions(capture, replay, cursor, upto, markets, report)
                    cursor = upto
            report.records += fed
            if fed:
                present.add(stream)
                if lo < hi:
                    _repair_sessions(capture, replay, cursor, hi, markets, report)
        report.hours += 1
        # Trades carry no session: owned only if every replayed collector
        # that was recording has its file of this hour, and no frame of the
        # hour was skipped.
        trades_owned = bool(present) and report.skipped == skipped and all(
            name in present for name, r in replays.items() if r.live_sessions())
        for name, replay in replays.items():
            if name not in present and replay.live_sessions():
                replay.abandon(hour)
        rows = capture.take(TABLES)
        if lo >= hi:
            continue
        report.rows_rebuilt["trades"] += len(rows["trades"])
        deleted, inserted = _repair(TABLES["trades"], rows["trades"], lo, hi, [], markets, trades_owned)
        report.deleted["trades"] += deleted
        report.inserted["trades"] += inserted
        bar.set_postfix(frames=report.frames, changed=report.changed)
    # A gap of an abandoned session is owned if it was detected before the hole.
    owned_until = {s: r.abandoned.get(s, end) for r in replays.values() for s in r.sessions}
    gaps = list(capture.gaps.values())
    report.rows_rebuilt["gaps"] += len(gaps)
    deleted, inserted = _repair_gaps(gaps, start, end, owned_until, markets)
    report.deleted["gaps"] += deleted
    report.inserted["gaps"] += inserted
    return report


def _repair_sessions(capture: _Capture, replay: _Replay, lo: datetime, hi: datetime,
                     markets: frozenset | None, report: ReingestReport) -> None:
    """Compare one collector's rows of [lo, hi) that carry a session (deltas,
    snapshots, lifecycle): those of its sessions replayed and not abandoned."""
    rows = capture.take(SESSION_TABLES)
    sessions = sorted(replay.sessions - replay.abandoned.keys())
    for table in SESSION_TABLES:
        report.rows_rebuilt[table] += len(rows[table])
        deleted, inserted = _repair(TABLES[table], rows[table], lo, hi, sessions, markets, False)
        report.deleted[table] += deleted
        report.inserted[table] += inserted


def _repair(table: _Table, rows: list, lo: datetime, hi: datetime, sessions: list[int],
            markets: frozenset | None, trades_owned: bool) -> tuple[int, int]:
    """Make the owned rows of [lo, hi) equal `rows`; return (deleted, inserted)."""
    columns = ", ".join(table.columns)
    staging = f"_reingest_{table.name}"
    key_match = " AND ".join(f"s.{c} = t.{c}" for c in table.key)
    rest = [c for c in table.columns if c not in table.key]
    rest_match = (f"ROW({', '.join('s.' + c for c in rest)}) IS NOT DISTINCT FROM "
                  f"ROW({', '.join('t.' + c for c in rest)})")
    market_filter = " AND t.market_ticker = ANY(%(markets)s)" if markets is not None else ""
    params = {"lo": lo, "hi": hi, "sessions": sessions, "sources": WS_SNAPSHOT_SOURCES,
              "markets": sorted(markets) if markets is not None else None,
              "trades_owned": trades_owned}
    with transaction.atomic():
        if table.record is TRADES:
            with connection.cursor() as cursor:
                lock_trade_writes(cursor)  # before any write: markets/candles.py
        elif table.record is DELTAS:
            with connection.cursor() as cursor:
                packs.lock_rewrites(cursor)  # before any write: markets/record/packs.py
        if rows and table.partitioned:
            ingest._ensure_days(table.record, rows)
        with connection.cursor() as cursor:
            raw = cursor.cursor
            raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS "
                        f"SELECT {columns} FROM {table.name} WITH NO DATA")
            raw.execute(f"TRUNCATE {staging}")
            if rows:
                with raw.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
                    for row in _for_copy(table, rows):
                        copy.write_row(row)
            # Changed trades say which candle bars to recompute (markets/candles.py).
            bars = table.record is TRADES
            touched = []
            raw.execute(
                compact.delete_sql(
                    table.record,
                    f"t.{table.time_column} >= %(lo)s AND t.{table.time_column} < %(hi)s "
                    f"AND {table.owned}{market_filter} AND NOT EXISTS "
                    f"(SELECT 1 FROM {staging} s WHERE {key_match} AND {rest_match})",
                    "t.market_ticker, t.ts" if bars else "", within=("%(lo)s", "%(hi)s")),
                params,
            )
            deleted = max(raw.rowcount, 0)
            if bars:
                touched += raw.fetchall()
            inserted = 0
            if rows:
                for statement in compact.insert_sql(table.record, staging, table.insert_where,
                                                    "market_ticker, ts" if bars else ""):
                    raw.execute(statement)
                inserted = max(raw.rowcount, 0)
                if bars:
                    touched += raw.fetchall()
            refresh_bars((ticker, minute_of(ts)) for ticker, ts in touched)
    if deleted or inserted:
        log.warning("reingest: %s [%s, %s): %d rows deleted, %d inserted",
                    table.name, lo.isoformat(), hi.isoformat(), deleted, inserted)
    return deleted, inserted


def _for_copy(table: _Table, rows: list):
    if table.name == "lifecycle_events":
        index = table.columns.index("payload")
        for row in rows:
            row = list(row)
            if not isinstance(row[index], str):
                row[index] = json.dumps(row[index], default=str)  # as ingest.lifecycle_ingest
            yield row
        return
    yield from ingest._with_json(rows, table.columns)


def _repair_gaps(gaps: list[list], start: datetime, end: datetime, owned_until: dict[int, datetime],
                 markets: frozenset | None) -> tuple[int, int]:
    """Gaps of the window: see the rule in the module docstring; (deleted, inserted or updated)."""
    columns = ", ".join(GAPS.columns)
    rows = []
    for gap in gaps:
        row = list(gap)
        if row[1] == TRADE_CHANNEL:
            row[8] = None  # closed by a REST backfill: the stored value stands
        rows.append(row)
    market_filter = " AND t.market_ticker = ANY(%(markets)s)" if markets is not None else ""
    sessions = sorted(owned_until)
    params = {"lo": start, "hi": end, "sessions": sessions, "until": [owned_until[s] for s in sessions],
              "reasons": PIPELINE_GAP_REASONS,
              "markets": sorted(markets) if markets is not None else None}
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS _reingest_gaps AS "
                    f"SELECT {columns} FROM sequence_gaps WITH NO DATA")
        raw.execute("TRUNCATE _reingest_gaps")
        if rows:
            with raw.copy(f"COPY _reingest_gaps ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.execute(
            "DELETE FROM sequence_gaps t WHERE t.detected_at >= %(lo)s AND t.detected_at < %(hi)s "
            "AND t.reason = ANY(%(reasons)s) AND EXISTS (SELECT 1 FROM "
            "unnest(%(sessions)s::bigint[], %(until)s::timestamptz[]) AS o(session_id, until) "
            "WHERE o.session_id = t.session_id AND t.detected_at < o.until)"
            f"{market_filter} AND NOT EXISTS (SELECT 1 FROM _reingest_gaps s WHERE "
            "s.market_ticker = t.market_ticker AND s.channel = t.channel "
            "AND s.session_id = t.session_id AND s.detected_at = t.detected_at)",
            params,
        )
        deleted = max(raw.rowcount, 0)
        raw.execute(
            f"INSERT INTO sequence_gaps AS t ({columns}) SELECT {columns} FROM _reingest_gaps "
            "ON CONFLICT (market_ticker, channel, session_id, detected_at) DO UPDATE SET "
            "reason = EXCLUDED.reason, sid = EXCLUDED.sid, expected_seq = EXCLUDED.expected_seq, "
            "received_seq = EXCLUDED.received_seq, tickers_on_sid = EXCLUDED.tickers_on_sid, "
            "recovered_at = COALESCE(EXCLUDED.recovered_at, t.recovered_at) "
            "WHERE ROW(t.reason, t.sid, t.expected_seq, t.received_seq, t.tickers_on_sid) "
            "IS DISTINCT FROM ROW(EXCLUDED.reason, EXCLUDED.sid, EXCLUDED.expected_seq, "
            "EXCLUDED.received_seq, EXCLUDED.tickers_on_sid) OR (EXCLUDED.recovered_at IS NOT NULL "
            "AND EXCLUDED.recovered_at IS DISTINCT FROM t.recovered_at)"
        )
        changed = max(raw.rowcount, 0)
    if deleted or changed:
        log.warning("reingest: sequence_gaps: %d rows deleted, %d inserted or corrected", deleted, changed)
    return deleted, changed


def _hour_floor(at: datetime) -> datetime:
    at = at.astimezone(timezone.utc)
    return at.replace(minute=0, second=0, microsecond=0)


def _config_from(values: dict | None) -> CollectorConfig:
    """The collector config the archived pipelines ran with (else this process's)."""
    if not values:
        return CollectorConfig.from_settings()
    known = {f.name: f for f in dataclasses.fields(CollectorConfig)}
    kept = {}
    for name, value in values.items():
        if name in known:
            kept[name] = Path(value) if name == "journal_dir" else value
    return CollectorConfig(**kept)

