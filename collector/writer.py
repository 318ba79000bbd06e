"""Batched, ordered, loss-free writes of what the collector records.

The pipeline hands rows to the `Writer` (in the column orders of
markets/ingest.py); the writer cuts them into numbered batches by size
(`flush_rows`) and age (`flush_seconds`) and writes each batch in one
transaction through markets.ingest, on one worker thread, so the database
never runs on the event loop and batches land in the order they were cut.
A live batch's deltas and snapshots go in with a plain (binary) COPY, since
they cannot be stored yet; trades, lifecycle rows, gaps and every journal
replay use the idempotent loads (COPY -> staging -> INSERT ... ON CONFLICT
DO NOTHING).

When PostgreSQL cannot be reached, a batch is appended to the on-disk journal
(`journal_dir`, one file per batch, named by its number) instead; the writer
tries the database again after a growing pause and, when it answers, loads
the journal oldest first before anything newer. Every load is idempotent, so
a batch loaded twice (a crash between commit and deleting its file) stores
nothing twice. Memory is bounded: rows waiting beyond `max_buffered_rows`
are spilled to the journal rather than kept. A batch that the database
refuses for its content (not for being unreachable) is moved aside to
`journal_dir/rejected/` and logged; it is never dropped.

Batch numbers are what keep order: a batch is numbered when it is cut, its
journal file carries the number, and the worker always loads journal files
numbered below the batch in hand before that batch.

Write-ahead (`journal_write_ahead`, the default): every batch is appended to
the journal (fsync) as soon as it is cut, then written to PostgreSQL, then
its file is removed. A row is therefore crash-safe at most `flush_seconds`
(plus one write cycle) after it arrived, whatever PostgreSQL does: that is
the durability window, and `durable_at` (the cut time of the newest batch
such that it and every older batch are durable) is the watermark that
collector/runs.py keeps in its state file. The longest a row sat only in
memory is measured (`memory_only_max_s` in the stats).

A failing journal (disk full, read-only) never kills the writer silently:
it is logged loudly (CRITICAL) every time; batches still go to PostgreSQL.
A batch that can be neither journaled nor written is held in memory
("stranded") and retried; the watermark stops. If that lasts longer than
`writer_failure_exit_s`, or the stranded rows exceed `max_buffered_rows`,
`run()` raises `WriterFailure`: the collector exits non-zero so that a
supervisor restarts it, and the next start records the hole (collector/runs.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import psycopg
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)

from markets import ingest
from markets.record.schema import GAPS
from markets.record.schema import TABLES as RECORD_TABLES

from . import runs
from .config import CollectorConfig

log = logging.getLogger(__name__)

# Table families in the order a batch is written (gaps last: a gap closed by
# a snapshot is closed after that snapshot is stored).
TABLES = ("snapshots", "deltas", "trades", "lifecycle", "gaps", "runs")
_INGEST = {
    "snapshots": ingest.snapshots_ingest,
    "deltas": ingest.deltas_ingest,
    # By trade_id, not only by key: a REST backfill of the same window may
    # have stored a trade with a differently rounded timestamp.
    "trades": ingest.trades_ingest_new_ids,
    "lifecycle": ingest.lifecycle_ingest,
    "gaps": ingest.gaps_apply,
    # The collector_runs bookkeeping (start, markets, watermark, clean stop).
    "runs": runs.runs_apply,
}
# A live batch is written once, so its deltas and snapshots cannot be stored
# yet: a plain COPY is enough (and much cheaper). Should one be there after
# all, the batch is written again with the idempotent loads above.
_APPEND = {**_INGEST, "snapshots": ingest.snapshots_append, "deltas": ingest.deltas_append}
# PostgreSQL is not there (down, restarting, network): retry later.
_UNREACHABLE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
_DUPLICATE = (IntegrityError, psycopg.IntegrityError)
# PostgreSQL refused the rows themselves.
_REFUSED = (DatabaseError, psycopg.DatabaseError)


class WriterFailure(RuntimeError):
    """Rows could be neither journaled nor written for too long: exit non-zero."""


@dataclass
class Batch:
    no: int
    tables: dict[str, list]
    cut_at: datetime | None = None  # wall clock when it was cut (not journaled)
    oldest: float = 0.0  # monotonic time its oldest row was added

    @property
    def rows(self) -> int:
        return sum(len(rows) for rows in self.tables.values())


class Writer:
    """See the module docstring. Rows are added from one thread (the event loop)."""

    def __init__(self, config: CollectorConfig | None = None) -> None:
        self.config = config or CollectorConfig()
        self.journal = Journal(Path(self.config.journal_dir))
        self._buffers: dict[str, list] = {t: [] for t in TABLES}
        # The deltas buffer itself, one lookup less on the hot path.
        self._deltas = self._buffers["deltas"]
        self._pending = 0
        self._oldest = 0.0  # monotonic time the oldest waiting row was added
        self._next_no = self.journal.last_number() + 1
        self._flush_rows = self.config.flush_rows
        self._max_rows = self.config.max_buffered_rows
        self._executor: ThreadPoolExecutor | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        self._db_retry_at = 0.0
        self._db_retry_delay = self.config.db_retry_initial
        # Crash safety (see the module docstring).
        self.run_id: int | None = None  # set by the runner: watermark ops go in every batch
        self.durable_at: datetime | None = None
        self._last_cut = time.monotonic()
        self._stranded: list[Batch] = []  # neither journaled nor written; oldest first
        self._stranded_since: float | None = None
        self._journal_failing = False
        self.memory_only_max_s = 0.0
        # collector/raw_archive.py RawArchive, or None: synced (fsync) before
        # any batch is journaled or written, so the frames of every durable
        # row are durable in the archive too.
        self.archive = None
        self.counters = {
            "rows_queued": 0,
            "rows_written": 0,  # rows new to the database
            "batches_written": 0,
            "batches_journaled": 0,
            "batches_replayed": 0,
            "batches_rejected": 0,
            "spills": 0,
            "db_failures": 0,
            "journal_writes": 0,  # write-ahead and fallback appends
            "journal_failures": 0,
            "archive_failures": 0,
        }

    # -- adding rows (event-loop thread) ---------------------------------------

    def add_delta(self, row: tuple) -> None:
        self._deltas.append(row)
        self._added()

    def add_snapshot(self, row: tuple) -> None:
        self._buffers["snapshots"].append(row)
        self._added()

    def add_trade(self, row: tuple) -> None:
        self._buffers["trades"].append(row)
        self._added()

    def add_lifecycle(self, row: tuple) -> None:
        self._buffers["lifecycle"].append(row)
        self._added()

    def open_gap(self, row: tuple) -> None:
        """A SequenceGap row in GAPS.columns order (markets/record/schema.py)."""
        self._buffers["gaps"].append((ingest.GAP_OPEN, row))
        self._added()

    def close_gap(self, market_ticker: str, channel: str, recovered_at: datetime) -> None:
        """Set recovered_at on the open gaps of (ticker, channel) detected by then."""
        self._buffers["gaps"].append((ingest.GAP_CLOSE, (market_ticker, channel, recovered_at)))
        self._added()

    def add_run_op(self, op: tuple) -> None:
        """A collector_runs op (collector/runs.py), written in order with the rows."""
        self._buffers["runs"].append(op)
        self._added()

    def close_gap_key(self, market_ticker: str, channel: str, session_id: int,
                      detected_at: datetime, recovered_at: datetime) -> None:
        """Close exactly one gap (a trade hole whose backfill succeeded)."""
        self._buffers["gaps"].append(
            (ingest.GAP_CLOSE_KEY, (market_ticker, channel, session_id, detected_at, recovered_at))
        )
        self._added()

    def _added(self) -> None:
        pending = self._pending
        if pending == 0:
            self._oldest = time.monotonic()
        self._pending = pending = pending + 1
        if pending >= self._flush_rows:
            if pending >= self._max_rows:
                self._spill()
            elif self._wake is not None:
                self._wake.set()

    @property
    def pending_rows(self) -> int:
        return self._pending

    # -- batches ---------------------------------------------------------------

    def _cut(self, heartbeat: bool = False) -> Batch | None:
        """The waiting rows as the next numbered batch (None when nothing waits).

        With a run set, every batch also carries the watermark op (its own
        cut time), and `heartbeat` cuts a batch even with no rows.
        """
        if self._pending == 0 and not (heartbeat and self.run_id is not None):
            return None
        now = datetime.now(timezone.utc)
        oldest = self._oldest if self._pending else time.monotonic()
        if self.run_id is not None:
            self._buffers["runs"].append(runs.op_watermark(self.run_id, now))
        tables = {t: rows for t, rows in self._buffers.items() if rows}
        self._buffers = {t: [] for t in TABLES}
        self._deltas = self._buffers["deltas"]
        self.counters["rows_queued"] += self._pending
        self._pending = 0
        self._last_cut = time.monotonic()
        batch = Batch(self._next_no, tables, now, oldest)
        self._next_no += 1
        return batch

    def _spill(self) -> None:
        """Too much waiting in memory (the database is slow or away): to disk."""
        batch = self._cut()
        if batch is None:
            return
        self._archive_sync()
        self.counters["spills"] += 1
        if self._journal(batch):
            self.counters["batches_journaled"] += 1
            log.warning("writer: %d rows waiting, spilled batch %d to the journal", batch.rows, batch.no)
        else:
            self._strand(batch)

    # -- crash safety -------------------------------------------------------------

    def _journal(self, batch: Batch) -> bool:
        """Append `batch` to the journal; False (logged loudly) if the disk refuses."""
        try:
            self.journal.write(batch)
        except OSError as exc:
            self.counters["journal_failures"] += 1
            self._journal_failing = True
            log.critical(
                "writer: JOURNAL WRITE FAILED (%s) in %s: batch %d (%d rows) is not crash-safe; "
                "it goes to PostgreSQL if it can, else it is held in memory",
                exc, self.journal.dir, batch.no, batch.rows,
            )
            return False
        if self._journal_failing:
            self._journal_failing = False
            log.warning("writer: the journal accepts writes again")
        self.counters["journal_writes"] += 1
        return True

    def _archive_sync(self) -> None:
        """The raw archive to disk, before the rows its frames made (see __init__)."""
        if self.archive is None:
            return
        try:
            self.archive.sync()
        except OSError as exc:
            # The rows matter more than their raw frames: recording goes on.
            self.counters["archive_failures"] += 1
            log.critical("writer: RAW ARCHIVE WRITE FAILED (%s); frames since the last sync "
                         "may be missing from it", exc)

    def _strand(self, batch: Batch) -> None:
        self._stranded.append(batch)
        if self._stranded_since is None:
            self._stranded_since = time.monotonic()
        log.critical(
            "writer: batch %d (%d rows) can be neither journaled nor written; %d rows held in memory",
            batch.no, batch.rows, self.stranded_rows,
        )

    @property
    def stranded_rows(self) -> int:
        return sum(b.rows for b in self._stranded)

    def _durable(self, batch: Batch) -> None:
        """`batch` is in the journal or PostgreSQL: move the watermark if nothing older is stranded."""
        if batch.cut_at is None:
            return
        self.memory_only_max_s = max(self.memory_only_max_s, time.monotonic() - batch.oldest)
        if self._stranded and self._stranded[0].no < batch.no:
            return
        if self.durable_at is None or batch.cut_at > self.durable_at:
            self.durable_at = batch.cut_at

    def check_failure(self) -> None:
        """Raise WriterFailure when stranded rows can wait no longer (see the module docstring)."""
        if not self._stranded:
            return
        waited = time.monotonic() - (self._stranded_since or time.monotonic())
        rows = self.stranded_rows
        if waited >= self.config.writer_failure_exit_s or rows > self._max_rows:
            message = (
                f"{rows} rows could be neither journaled ({self.journal.dir}) nor written to "
                f"PostgreSQL for {waited:.0f}s; giving up so that a supervisor restarts the collector"
            )
            log.critical("writer: %s", message)
            raise WriterFailure(message)

    # -- one write cycle (worker thread, or the caller for flush_sync) ---------

    def _cycle(self, batch: Batch | None) -> None:
        """Journal `batch` (write-ahead), load older batches, then `batch`.

        Without write-ahead, `batch` is journaled only if the DB is away.
        """
        journaled = False
        if batch is not None:
            self._archive_sync()
        if batch is not None and self.config.journal_write_ahead:
            journaled = self._journal(batch)
            if journaled:
                self._durable(batch)
        if self._stranded and not self._journal_failing:
            # The disk may accept them again.
            for old in list(self._stranded):
                if not self._journal(old):
                    break
                self._stranded.remove(old)
            if not self._stranded:
                self._stranded_since = None
        if time.monotonic() >= self._db_retry_at:
            try:
                self._replay(upto=batch.no if batch else None)
                if batch is not None:
                    try:
                        self._write(batch, _APPEND)
                    except _DUPLICATE:
                        self._write(batch, _INGEST)
                    if journaled:
                        self.journal.remove(batch.no)
                    self._durable(batch)
                    batch = None
                self._db_ok()
            except _UNREACHABLE as exc:
                self._db_failed(exc)
            except _REFUSED as exc:
                # Not a connectivity problem: keep the rows aside, loudly.
                if batch is not None:
                    self._reject(batch, exc, journaled)
                    batch = None
            except Exception as exc:  # noqa: BLE001 - a bug must not stop collection
                log.exception("writer: unexpected failure writing batch")
                self._reset_connection()
                if batch is not None:
                    self._reject(batch, exc, journaled)
                    batch = None
        if batch is not None:
            # Not written: it waits in the journal (or, if the disk refuses, in memory).
            if journaled:
                self.counters["batches_journaled"] += 1
            elif self._journal(batch):
                self.counters["batches_journaled"] += 1
                self._durable(batch)
            else:
                self._strand(batch)

    def _reject(self, batch: Batch, exc: Exception, journaled: bool) -> None:
        try:
            self.journal.reject(batch, exc)
        except OSError as err:
            log.critical("writer: cannot keep refused batch %d aside (%s); its rows are lost", batch.no, err)
        if journaled:
            self.journal.remove(batch.no)
        self._durable(batch)
        self.counters["batches_rejected"] += 1

    def _write(self, batch: Batch, loads=_INGEST) -> None:
        written = 0
        with transaction.atomic():
            for table in TABLES:
                rows = batch.tables.get(table)
                if rows:
                    written += loads[table](rows)
        self.counters["rows_written"] += written
        self.counters["batches_written"] += 1

    def _replay(self, upto: int | None) -> None:
        stranded = {b.no: b for b in self._stranded if upto is None or b.no < upto}
        for no in sorted(set(self.journal.numbers(below=upto)) | set(stranded)):
            if no in stranded:
                held = stranded[no]
                self._write(held, _INGEST)
                self._stranded.remove(held)
                if not self._stranded:
                    self._stranded_since = None
                self._durable(held)
                self.counters["batches_replayed"] += 1
                log.warning("writer: wrote batch %d held in memory (%d rows)", no, held.rows)
                continue
            try:
                batch = self.journal.read(no)
            except (OSError, ValueError) as exc:
                log.error("writer: journal batch %d unreadable (%s); moved aside", no, exc)
                self.journal.reject_file(no)
                continue
            try:
                self._write(batch)
            except _UNREACHABLE:
                raise
            except _REFUSED as exc:
                self.journal.reject(batch, exc)
                self.journal.remove(no)
                self.counters["batches_rejected"] += 1
                continue
            self.journal.remove(no)
            self.counters["batches_replayed"] += 1
            log.info("writer: loaded journal batch %d (%d rows)", no, batch.rows)

    def _db_ok(self) -> None:
        if self._db_retry_delay != self.config.db_retry_initial:
            log.info("writer: PostgreSQL is back")
        self._db_retry_delay = self.config.db_retry_initial
        self._db_retry_at = 0.0

    def _db_failed(self, exc: Exception) -> None:
        self.counters["db_failures"] += 1
        self._reset_connection()
        self._db_retry_at = time.monotonic() + self._db_retry_delay
        log.warning(
            "writer: PostgreSQL unreachable (%s); journaling, retry in %.1fs",
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            self._db_retry_delay,
        )
        self._db_retry_delay = min(self._db_retry_delay * 2, self.config.db_retry_max)

    @staticmethod
    def _reset_connection() -> None:
        # The connection may be half-dead; the next attempt opens a new one.
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail too
            pass

    # -- driving it -------------------------------------------------------------

    def flush_sync(self) -> None:
        """Write everything waiting (and the journal), in the calling thread."""
        self._cycle(self._cut())

    def _due(self) -> bool:
        if self._pending >= self._flush_rows:
            return True
        now = time.monotonic()
        if self._pending and now - self._oldest >= self.config.flush_seconds:
            return True
        if self.run_id is not None and now - self._last_cut >= self.config.heartbeat_seconds:
            return True
        return bool(self.journal.count or self._stranded) and now >= self._db_retry_at

    async def run(self, stop: asyncio.Event) -> None:
        """Flush by size and by time until `stop` is set, then close()."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="collector-writer")
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if not self._due():
                    wake_wait = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait(
                        {stop_wait, wake_wait},
                        timeout=self.config.flush_seconds / 2,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    wake_wait.cancel()
                    self._wake.clear()
                    if not self._due():
                        continue
                await loop.run_in_executor(self._executor, self._cycle, self._cut(heartbeat=True))
                self.check_failure()
        finally:
            stop_wait.cancel()
            await self.close()

    async def close(self) -> None:
        """Write everything still waiting (to PostgreSQL, else to the journal)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="collector-writer")
        # One last attempt at the database even if it failed a moment ago.
        self._db_retry_at = 0.0
        await loop.run_in_executor(self._executor, self._cycle, self._cut(heartbeat=True))
        if self.archive is not None:
            await loop.run_in_executor(self._executor, self._archive_close)
        await loop.run_in_executor(self._executor, self._reset_connection)
        self._executor.shutdown(wait=True)
        self._executor = None
        if self._stranded:
            message = f"{self.stranded_rows} rows could be neither journaled nor written at shutdown"
            log.critical("writer: %s; they are lost", message)
            raise WriterFailure(message)

    def _archive_close(self) -> None:
        try:
            self.archive.close()
        except OSError as exc:
            self.counters["archive_failures"] += 1
            log.critical("writer: raw archive could not be closed (%s)", exc)

    def stats(self) -> dict:
        return {
            **self.counters,
            "rows_pending": self._pending,
            "rows_stranded": self.stranded_rows,
            "journal_batches": self.journal.count,
            "memory_only_max_s": round(self.memory_only_max_s, 3),
        }


# --- the journal --------------------------------------------------------------


class Journal:
    """One file per batch, `<number>.batch` (orjson), written atomically."""

    SUFFIX = ".batch"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._numbers = {
            int(p.name[: -len(self.SUFFIX)])
            for p in self.dir.iterdir()
            if p.name.endswith(self.SUFFIX) and p.name[: -len(self.SUFFIX)].isdigit()
        }

    @property
    def count(self) -> int:
        return len(self._numbers)

    def last_number(self) -> int:
        with self._lock:
            return max(self._numbers, default=0)

    def numbers(self, below: int | None = None) -> list[int]:
        with self._lock:
            found = sorted(self._numbers)
        return [n for n in found if below is None or n < below]

    def _path(self, no: int) -> Path:
        return self.dir / f"{no:012d}{self.SUFFIX}"

    def write(self, batch: Batch) -> None:
        data = orjson.dumps({"no": batch.no, "tables": batch.tables}, default=_encode)
        path = self._path(batch.no)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # The rename itself must survive a power cut too.
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        with self._lock:
            self._numbers.add(batch.no)

    def read(self, no: int) -> Batch:
        data = orjson.loads(self._path(no).read_bytes())
        tables = {t: _decode(t, rows) for t, rows in data["tables"].items()}
        return Batch(data["no"], tables)

    def remove(self, no: int) -> None:
        self._path(no).unlink(missing_ok=True)
        with self._lock:
            self._numbers.discard(no)

    def reject(self, batch: Batch, exc: Exception) -> None:
        """Keep a batch the database refused, with the reason, out of the way."""
        rejected = self.dir / "rejected"
        rejected.mkdir(exist_ok=True)
        path = rejected / f"{batch.no:012d}{self.SUFFIX}"
        if path.exists():
            # Numbers start over when a process finds the journal empty.
            path = rejected / f"{batch.no:012d}-{time.time_ns()}{self.SUFFIX}"
        path.write_bytes(orjson.dumps({"no": batch.no, "tables": batch.tables}, default=_encode))
        path.with_suffix(".error").write_text(f"{type(exc).__name__}: {exc}\n")
        log.error("writer: PostgreSQL refused batch %d (%s); kept in %s", batch.no, exc, path)

    def reject_file(self, no: int) -> None:
        rejected = self.dir / "rejected"
        rejected.mkdir(exist_ok=True)
        os.replace(self._path(no), rejected / self._path(no).name)
        with self._lock:
            self._numbers.discard(no)


def _encode(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot journal {type(value).__name__}")


def _dt(value):
    return None if value is None else datetime.fromisoformat(value)


def _decode(table: str, rows: list) -> list:
    if table == "gaps":
        out = []
        for kind, row in rows:
            if kind == ingest.GAP_OPEN:
                out.append((kind, GAPS.decode(row)))
            elif kind == ingest.GAP_CLOSE_KEY:
                ticker, channel, session, detected, at = row
                out.append((kind, (ticker, channel, session, _dt(detected), _dt(at))))
            else:
                ticker, channel, at = row
                out.append((kind, (ticker, channel, _dt(at))))
        return out
    if table == "runs":
        return [tuple(op) for op in rows]  # plain JSON values already
    decode = RECORD_TABLES[table].decode
    return [decode(row) for row in rows]
