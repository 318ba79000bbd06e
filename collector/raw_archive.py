"""The raw archive: every frame the collector received, verbatim, in hourly zstd files.

Kalshi's wire format changes (fixed-point strings replaced integer cents;
`use_yes_price` will flip), and the parsed record can be wrong in ways found
only later. The raw archive keeps what came off the socket so that the record
can be rebuilt from it (collector/reingest.py, `manage.py reingest`).

Layout, under `raw_archive_url` (markets/objectstore.py; default
`<project>/var/raw`):

    date=YYYY-MM-DD/hour=HH/<stream>.jsonl.zst

A *stream* is one collector process (`<host>-<pid>-<start µs>`); its file of
an hour holds, one JSON object a line, in the order the pipelines saw them:

* a header, first: `{"k": "hour", "stream", "config", "open", "gapped",
  "baselined", "last"}`: the collector config the pipelines ran with, the
  sessions open at that moment per connection, and the process-wide record
  state (collector/pipeline.py RecordState), so that a replay can begin here;
* frames: `{"k": "f", "c": connection, "s": session_id, "at": µs, "f": text}`,
  `at` being the pipeline's own clamped, strictly increasing `received_at`
  stamp of that frame (so a replay reproduces every row key);
* what else the pipeline reacts to (see `ArchiveTap`): `start` / `end` of a
  session, `expect` (a subscribe sent), `refused`, `opened`, `missed`.

Hours are UTC hours of the `received_at` stamps. Lines are compressed as
they come (one zstd frame per file, a block flushed at every `sync()`).

Durability: `sync()` compresses what waits, writes it and fsyncs the file.
The Writer calls it before it journals or writes a batch
(collector/writer.py), so every row that is durable has its frames durable in
the archive first. A kill -9 leaves at most an unfinished last zstd block:
`read_records` stops there, logs it and counts it.

Cost on the event loop: `frame()` encodes one line (orjson) and appends it to
a deque; compression, writing and fsync happen in `sync()` on the writer's
thread.

An object-store root (`s3://...`) cannot be appended to and fsynced: files
are written to a local spool directory and uploaded when their hour is
finished (and at start, what a crashed process left).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import zstandard

from markets.objectstore import Location, location_from_url

log = logging.getLogger(__name__)

SUFFIX = ".jsonl.zst"
HOUR_US = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
ZSTD_LEVEL = 3
# Lines waiting in memory beyond this are compressed (not fsynced) by the
# event loop itself: a collector whose writer is stuck stays bounded.
MAX_WAITING_LINES = 100_000
READ_CHUNK = 1 << 20
OFF = "off"


def to_us(at: datetime) -> int:
    """`at` in exact microseconds since the epoch."""
    return (at - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def hour_path(hour_us: int, stream: str) -> str:
    """The file of `stream` for the hour starting at `hour_us` (relative to the root)."""
    at = from_us(hour_us)
    return f"date={at:%Y-%m-%d}/hour={at:%H}/{stream}{SUFFIX}"


def hour_of_path(relative: str) -> datetime | None:
    """The hour a file belongs to, from its `date=/hour=` directories."""
    try:
        date_part, hour_part = relative.split("/")[-3:-1]
        day = datetime.strptime(date_part.removeprefix("date="), "%Y-%m-%d")
        return day.replace(hour=int(hour_part.removeprefix("hour=")), tzinfo=timezone.utc)
    except ValueError:
        return None


def stream_of_path(relative: str) -> str:
    return relative.rsplit("/", 1)[-1].removesuffix(SUFFIX)


def new_stream_name() -> str:
    host = socket.gethostname().replace("/", "_").replace("-", "_") or "host"
    return f"{host}-{os.getpid()}-{to_us(datetime.now(timezone.utc))}"


@dataclass
class _Rotate:
    """Queued between lines: the lines after it go to a new hour's file."""

    hour_us: int
    header: bytes


class RawArchive:
    """The archive writer of one collector process. See the module docstring.

    `frame()` and the events are called on the event loop (through an
    `ArchiveTap` per connection); `sync()` and `close()` on the writer's
    thread.
    """

    def __init__(self, location: Location, *, config=None, stream: str | None = None,
                 spool_dir: Path | None = None) -> None:
        self.location = location
        self.stream = stream or new_stream_name()
        self.config = config
        self.state = None  # collector.pipeline.RecordState, for the hour headers
        local = location.local_path
        self._remote = local is None
        self._dir = local if local is not None else Path(spool_dir or _default_spool())
        self._waiting: deque = deque()
        self._hour_us: int | None = None  # the hour lines are queued for
        self.open_sessions: dict[str, list[int]] = {}  # connection -> [session, started µs]
        self._lock = threading.Lock()  # sync() vs the event loop's overflow drain
        self._file = None
        self._file_relative: str | None = None
        self._compressor = None
        self._dirty = False
        self.counters = {"lines": 0, "events": 0, "bytes_raw": 0, "bytes_written": 0,
                         "syncs": 0, "files": 0, "uploads": 0, "upload_failures": 0,
                         "write_failures": 0}
        if self._remote:
            self._upload_leftovers()

    @classmethod
    def from_config(cls, config) -> "RawArchive | None":
        """The archive `config.raw_archive_url` names, or None when it is "off"."""
        url = getattr(config, "raw_archive_url", "") or ""
        if url.strip().lower() in ("", OFF):
            return None
        return cls(location_from_url(url), config=config)

    def tap(self, connection: str) -> "ArchiveTap":
        return ArchiveTap(self, connection)

    # -- the event loop's side ---------------------------------------------------

    def _queue(self, record: dict, at_us: int | None) -> None:
        if at_us is not None:
            hour = at_us - at_us % HOUR_US
            if hour != self._hour_us:
                self._new_hour(hour, at_us)
        elif self._hour_us is None:
            now = to_us(datetime.now(timezone.utc))
            self._new_hour(now - now % HOUR_US)
        self._append(orjson.dumps(record))

    def _append(self, line: bytes) -> None:
        waiting = self._waiting
        waiting.append(line)
        if len(waiting) > MAX_WAITING_LINES:
            try:
                self._drain(fsync=False)
            except OSError as exc:  # never the frame's problem: recording goes on
                self.counters["write_failures"] += 1
                log.critical("raw archive: RAW ARCHIVE WRITE FAILED (%s); frames are missing from it", exc)

    def _new_hour(self, hour_us: int, first_us: int | None = None) -> None:
        """Queue the next hour's file, its header first. `first_us` is the
        stamp of the record that begins the hour: the pipeline has stamped it
        already, so the header's `last` is kept below it (a replay from this
        header must give that record its own stamp, not one clamped after it)."""
        state = self.state
        last = to_us(state.last_received) if state is not None and state.last_received else None
        if first_us is not None and last is not None:
            last = min(last, first_us - 1)
        header = {
            "k": "hour",
            "v": 1,
            "stream": self.stream,
            "hour": from_us(hour_us).isoformat(),
            "config": _config_dict(self.config),
            "open": dict(self.open_sessions),
            "gapped": sorted(state.gapped) if state is not None else [],
            "baselined": sorted(state.baselined) if state is not None else [],
            "last": last,
        }
        self._hour_us = hour_us
        self._waiting.append(_Rotate(hour_us, orjson.dumps(header)))

    # -- the writer thread's side ---------------------------------------------------

    def sync(self) -> None:
        """Compress and write what waits, flush a zstd block, fsync. Thread-safe."""
        self._drain(fsync=True)

    def _drain(self, fsync: bool) -> None:
        with self._lock:
            # Only what is there now: the event loop may append meanwhile.
            popleft = self._waiting.popleft
            items = [popleft() for _ in range(len(self._waiting))]
            lines: list[bytes] = []
            for item in items:
                if type(item) is bytes:
                    lines.append(item)
                else:  # _Rotate
                    self._write_lines(lines)
                    lines = []
                    self._open(item)
            self._write_lines(lines)
            if self._file is not None and self._dirty:
                block = self._compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                self._file.write(block)
                self.counters["bytes_written"] += len(block)
                self._file.flush()
                if fsync:
                    os.fsync(self._file.fileno())
                    self.counters["syncs"] += 1
                self._dirty = False

    def _write_lines(self, lines: list[bytes]) -> None:
        if not lines:
            return
        if self._file is None:  # events before any hour began (cannot happen; be safe)
            now = to_us(datetime.now(timezone.utc))
            self._open(_Rotate(now - now % HOUR_US, b'{"k":"hour","v":1}'))
        lines.append(b"")
        text = b"\n".join(lines)
        data = self._compressor.compress(text)
        if data:
            self._file.write(data)
            self.counters["bytes_written"] += len(data)
        self.counters["lines"] += len(lines) - 1
        self.counters["bytes_raw"] += len(text)
        self._dirty = True

    def _open(self, rotate: _Rotate) -> None:
        self._finish()
        relative = hour_path(rotate.hour_us, self.stream)
        path = self._dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")
        self._file_relative = relative
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
        self.counters["files"] += 1
        _fsync_dir(path.parent)
        self._file.write(self._compressor.compress(rotate.header + b"\n"))
        self._dirty = True

    def _finish(self) -> None:
        """End the current file's zstd frame, fsync and close it (upload if remote)."""
        if self._file is None:
            return
        tail = self._compressor.flush()
        self._file.write(tail)
        self.counters["bytes_written"] += len(tail)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        finished = self._dir / self._file_relative
        self._file = self._compressor = None
        self._dirty = False
        if self._remote:
            self._upload(finished, self._file_relative)

    def close(self) -> None:
        """Write everything and end the file (at a clean stop)."""
        self._drain(fsync=True)
        with self._lock:
            self._finish()

    # -- object stores ---------------------------------------------------------------

    def _upload(self, local_file: Path, relative: str) -> None:
        try:
            self.location.upload(local_file, relative)
        except Exception as exc:  # noqa: BLE001 - kept in the spool, uploaded at the next start
            self.counters["upload_failures"] += 1
            log.error("raw archive: upload of %s to %s failed (%s); kept in %s",
                      relative, self.location.url, exc, self._dir)
            return
        local_file.unlink(missing_ok=True)
        self.counters["uploads"] += 1

    def _upload_leftovers(self) -> None:
        """Files a previous process left in the spool (a crash, a failed upload)."""
        for path in sorted(self._dir.glob(f"date=*/hour=*/*{SUFFIX}")):
            self._upload(path, path.relative_to(self._dir).as_posix())

    def stats(self) -> dict:
        return {**self.counters, "lines_waiting": len(self._waiting)}


class ArchiveTap:
    """One connection's (one Pipeline's) entry into the archive.

    The pipeline calls these where it reacts to something other than a
    frame, with the values it used, so that a replay reproduces its rows.
    """

    __slots__ = ("_archive", "_queue", "_prefix", "connection")

    def __init__(self, archive: RawArchive, connection: str) -> None:
        self._archive = archive
        self._queue = archive._queue
        self.connection = connection
        self._prefix = b'{"k":"f","c":' + orjson.dumps(connection) + b',"s":'

    def frame(self, raw, at: datetime, session_id: int | None) -> None:
        """A frame received, with the pipeline's `received_at` stamp for it.

        This runs for every frame on the event loop: the line is formatted
        by hand (one orjson call for the text), compressed later by sync().
        """
        # Exact: a float's error at today's epoch seconds is far below 1 µs.
        at_us = int(at.timestamp()) * 1_000_000 + at.microsecond
        archive = self._archive
        if type(raw) is bytes:
            try:
                raw = raw.decode()  # the same text; Kalshi's frames are UTF-8 JSON
            except UnicodeDecodeError:
                pass
        if type(raw) is str and type(session_id) is int and archive._hour_us == at_us - at_us % HOUR_US:
            archive._append(b'%b%d,"at":%d,"f":%b}' % (self._prefix, session_id, at_us, orjson.dumps(raw)))
        elif isinstance(raw, str):
            self._queue({"k": "f", "c": self.connection, "s": session_id, "at": at_us, "f": raw}, at_us)
        else:  # a binary frame (Kalshi sends text): kept as latin-1, byte for byte
            self._queue({"k": "f", "c": self.connection, "s": session_id, "at": at_us,
                         "b": bytes(raw).decode("latin-1")}, at_us)

    def session_started(self, session_id: int, at: datetime) -> None:
        at_us = to_us(at)
        self._archive.open_sessions[self.connection] = [session_id, at_us]
        self._event({"k": "start", "s": session_id, "at": at_us}, at_us)

    def session_ended(self, session_id: int, at: datetime | None) -> None:
        self._archive.open_sessions.pop(self.connection, None)
        self._event({"k": "end", "s": session_id, "at": None if at is None else to_us(at)})

    def subscription_expected(self, session_id, command_id: int, channel: str, tickers) -> None:
        self._event({"k": "expect", "s": session_id, "id": command_id, "ch": channel,
                     "t": list(tickers or ())})

    def subscribe_refused(self, session_id, refused: dict[str, str]) -> None:
        self._event({"k": "refused", "s": session_id, "r": refused})

    def market_opened(self, session_id, ticker: str, at: datetime) -> None:
        self._event({"k": "opened", "s": session_id, "t": ticker, "at": to_us(at)})

    def market_missed(self, session_id, ticker: str, existed_from: datetime) -> None:
        self._event({"k": "missed", "s": session_id, "t": ticker, "at": to_us(existed_from)})

    def _event(self, record: dict, at_us: int | None = None) -> None:
        record["c"] = self.connection
        self._archive.counters["events"] += 1
        self._queue(record, at_us)


# --- reading ---------------------------------------------------------------------


@dataclass
class ReadStats:
    files: int = 0
    lines: int = 0
    truncated_files: int = 0  # ended inside a zstd block or a line (a kill -9)
    bad_lines: int = 0


def read_records(location: Location, relative: str, stats: ReadStats | None = None):
    """Yield the records (dicts) of one archive file, streaming.

    Tolerates what a kill -9 leaves: a last zstd block cut short or a last
    line without its newline; both are logged and counted, never raised.
    Bytes that are not zstd (a torn write) end the file where they begin.
    """
    stats = stats if stats is not None else ReadStats()
    stats.files += 1
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    rest = b""
    produced = 0  # decompressed bytes handed on so far
    truncated = False
    with location.open_input(relative) as stream:
        while True:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                break
            try:
                data = decompressor.decompress(chunk)
                if decompressor.eof:  # another zstd frame follows (not written by us)
                    unused = decompressor.unused_data
                    decompressor = zstandard.ZstdDecompressor().decompressobj()
                    if unused:
                        data += decompressor.decompress(unused)
            except zstandard.ZstdError as exc:
                log.warning("raw archive: %s is cut short (%s); read up to there", relative, exc)
                truncated = True
                data = _decodable(location, relative)[produced:]
                chunk = b""
            produced += len(data)
            if data:
                lines = (rest + data).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    record = _parse_line(line, relative, stats)
                    if record is not None:
                        yield record
            if truncated:
                break
    if rest:
        truncated = True
        log.warning("raw archive: %s ends inside a line (%d bytes); that line is dropped",
                    relative, len(rest))
    if truncated:
        stats.truncated_files += 1


def _decodable(location: Location, relative: str) -> bytes:
    """All a damaged file decodes to before its first bad byte.

    Slow (the file is fed in small pieces, then byte by byte from the piece
    that fails), so used only once a file is known to be damaged. A
    decompressor that failed cannot go on, hence the second pass.
    """
    with location.open_input(relative) as stream:
        data = stream.read()
    step = 4096
    good = 0  # the input offset of the first piece that fails
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        while good < len(data):
            decompressor.decompress(data[good:good + step])
            good += step
        return b""  # cannot happen: the file failed before
    except zstandard.ZstdError:
        pass
    out = []
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        if good:
            out.append(decompressor.decompress(data[:good]))
        for i in range(good, min(good + step, len(data))):
            out.append(decompressor.decompress(data[i:i + 1]))
    except zstandard.ZstdError:
        pass
    return b"".join(out)


def _parse_line(line: bytes, relative: str, stats: ReadStats) -> dict | None:
    if not line:
        return None
    stats.lines += 1
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        stats.bad_lines += 1
        log.warning("raw archive: unreadable line in %s: %r", relative, line[:200])
        return None
    if not isinstance(record, dict):
        stats.bad_lines += 1
        return None
    return record


def frame_text(record: dict):
    """The frame exactly as received (str, or bytes for a binary frame)."""
    text = record.get("f")
    if text is not None:
        return text
    return record["b"].encode("latin-1")


def archive_files(location: Location, start: datetime, end: datetime) -> dict[datetime, list[tuple[str, int]]]:
    """{hour: [(relative path, size)]} of the files of the hours overlapping [start, end)."""
    found: dict[datetime, list[tuple[str, int]]] = {}
    day = start.astimezone(timezone.utc).date()
    while datetime(day.year, day.month, day.day, tzinfo=timezone.utc) < end:
        for relative, size in location.files(f"date={day:%Y-%m-%d}"):
            hour = hour_of_path(relative)
            if hour is None or not relative.endswith(SUFFIX):
                continue
            if hour + timedelta(hours=1) > start and hour < end:
                found.setdefault(hour, []).append((relative, size))
        day += timedelta(days=1)
    return found


def read_header(location: Location, relative: str) -> dict | None:
    """The first record of a file (its hour header), reading no further."""
    for record in read_records(location, relative):
        return record if record.get("k") == "hour" else None
    return None


# --- retention -------------------------------------------------------------------


def archive_prune(location: Location, *, keep_days: int, now: datetime | None = None) -> list[str]:
    """Delete the files of the days older than `keep_days` days (0: keep all); return them."""
    if keep_days <= 0:
        return []
    now = now or datetime.now(timezone.utc)
    cutoff = (now - timedelta(days=keep_days)).date()
    deleted = []
    for relative, _ in location.files():
        day_part = relative.split("/", 1)[0]
        try:
            day = datetime.strptime(day_part.removeprefix("date="), "%Y-%m-%d").date()
        except ValueError:
            continue
        if day < cutoff:
            location.delete(relative)
            deleted.append(relative)
    local = location.local_path
    if local is not None:  # object stores have no empty directories to leave behind
        for relative in sorted({r.split("/", 1)[0] for r in deleted}):
            for directory in sorted((local / relative).glob("**/"), reverse=True):
                if not any(directory.iterdir()):
                    directory.rmdir()
    return deleted


def _config_dict(config) -> dict | None:
    if config is None or not dataclasses.is_dataclass(config):
        return None
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _default_spool() -> Path:
    return Path(__file__).resolve().parent.parent / "var" / "raw-spool"
