"""Planning day-file downloads: the cache, resuming, verifying (no I/O but the disk)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from .errors import DownloadError

CHUNK = 1 << 20


@dataclass
class Quote:
    """What a request covers before it runs: day files (and rows, when markets are given)."""

    files: int = 0
    bytes: int = 0
    # Of those, what is already in the local cache (when `dest` was given).
    cached_files: int = 0
    cached_bytes: int = 0
    # Rows per type (deltas, trades, snapshots, lifecycle), from /coverage of the markets.
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def bytes_to_fetch(self) -> int:
        return self.bytes - self.cached_bytes


@dataclass
class FilePlan:
    """One listed file: where it goes, and how much of it is already here."""

    entry: dict[str, Any]
    target: Path
    part: Path
    offset: int  # bytes of the part already downloaded (resume from here)
    cached: bool

    @property
    def size(self) -> int:
        return int(self.entry["bytes"])

    @property
    def if_range(self) -> str:
        """The version we resume, as the server's Last-Modified spells it."""
        modified: datetime = self.entry["modified"]
        return format_datetime(modified.replace(microsecond=0), usegmt=True)


def _stamp(entry: dict[str, Any]) -> float:
    modified: datetime = entry["modified"]
    return modified.timestamp()


def plan_file(entry: dict[str, Any], dest: Path) -> FilePlan:
    """Cached if a file of the listed size and modification time is there already.

    A partial download is kept as `<name>.<version>.part`, the version being
    the listed modification time: a part of an older version of the file is
    never completed with bytes of a newer one (it is removed instead).
    """
    root = dest.resolve()
    target = (root / entry["path"]).resolve()
    if root not in target.parents:
        raise DownloadError(f"refusing a path outside {root}: {entry['path']}")
    size, stamp = int(entry["bytes"]), _stamp(entry)
    if target.exists():
        info = target.stat()
        if info.st_size == size and abs(info.st_mtime - stamp) < 1e-3:
            return FilePlan(entry, target, target, size, cached=True)
    version = int(stamp * 1_000_000)
    part = target.with_name(f"{target.name}.{version}.part")
    if target.parent.exists():
        for stale in target.parent.glob(f"{target.name}.*.part"):
            if stale != part:
                stale.unlink()
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        part.unlink()
        offset = 0
    return FilePlan(entry, target, part, offset, cached=False)


def finish_file(plan: FilePlan) -> Path:
    """Check the part's size against the listing, then move it into place."""
    got = plan.part.stat().st_size
    if got != plan.size:
        plan.part.unlink()
        raise DownloadError(
            f"{plan.entry['path']}: got {got} bytes, the server listed {plan.size}")
    os.replace(plan.part, plan.target)
    stamp = _stamp(plan.entry)
    os.utime(plan.target, (stamp, stamp))
    return plan.target


def add_rows(quote: Quote, days: list[dict[str, Any]], types: list[str] | None) -> None:
    for day in days:
        for kind in ("deltas", "trades", "snapshots", "lifecycle"):
            if types is None or kind in types:
                quote.rows[kind] = quote.rows.get(kind, 0) + int(day.get(kind) or 0)
