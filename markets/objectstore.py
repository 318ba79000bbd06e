"""Where files of the record live: a local directory or an object store, by URL.

The raw archive (collector/raw_archive.py) and, next, the Parquet lake keep
files under one root given as a URL: a local path (`/data/raw`, relative
paths are taken from the current directory) or anything
`pyarrow.fs.FileSystem.from_uri` understands (`s3://bucket/prefix`,
`gs://...`, `file:///...`). `Location` is that root, with the few operations
both need: list, open for reading, size, delete. Writing with fsync
semantics is only possible on a local filesystem (`Location.local_path`);
an object store receives whole files (`upload`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pyarrow import fs as pafs


@dataclass(frozen=True)
class Location:
    """A root directory on some filesystem (see the module docstring)."""

    url: str
    filesystem: pafs.FileSystem
    root: str  # the root's path inside `filesystem`, without a trailing slash

    @property
    def local_path(self) -> Path | None:
        """The root as a local directory, or None for an object store."""
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            return Path(self.root)
        return None

    def path(self, relative: str) -> str:
        """The filesystem path of `relative` (slash-separated) under the root."""
        return f"{self.root}/{relative}" if relative else self.root

    def files(self, relative: str = "") -> list[tuple[str, int]]:
        """(path relative to the root, size) of every file under `relative`, sorted."""
        selector = pafs.FileSelector(self.path(relative), recursive=True, allow_not_found=True)
        found = []
        prefix = self.root + "/"
        for info in self.filesystem.get_file_info(selector):
            if info.type == pafs.FileType.File:
                found.append((info.path[len(prefix):] if info.path.startswith(prefix) else info.path,
                              info.size or 0))
        return sorted(found)

    def open_input(self, relative: str):
        """A readable binary stream of the file's bytes as stored (pyarrow
        would otherwise decompress by the file's extension)."""
        return self.filesystem.open_input_stream(self.path(relative), compression=None)

    def delete(self, relative: str) -> None:
        self.filesystem.delete_file(self.path(relative))

    def upload(self, local_file: Path, relative: str) -> None:
        """Copy a finished local file to `relative` under the root."""
        parent = self.path(relative).rsplit("/", 1)[0]
        self.filesystem.create_dir(parent, recursive=True)
        with open(local_file, "rb") as src, self.filesystem.open_output_stream(
            self.path(relative), compression=None
        ) as out:
            while block := src.read(1 << 20):
                out.write(block)


def location_from_url(url: str) -> Location:
    """The Location of `url`: a local path or a pyarrow filesystem URI."""
    if "://" not in url:
        path = os.path.abspath(os.path.expanduser(url))
        return Location(url, pafs.LocalFileSystem(), path.rstrip("/") or "/")
    filesystem, root = pafs.FileSystem.from_uri(url)
    return Location(url, filesystem, root.rstrip("/"))
