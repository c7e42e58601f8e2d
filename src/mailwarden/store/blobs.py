"""Content-addressed message bodies under data_dir/blobs, fsync'd before the DB commit.

Layout: blobs/ab/cd/<sha256 hex>. A blob is written to a temporary file in its final
directory, fsync'd, renamed into place, and the directory is fsync'd, so a crash leaves
either no file or the whole file. Identical content is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

_KEY = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root)

    def path(self, key: str) -> Path:
        return Path(self._path(key))

    def _path(self, key: str) -> str:
        if _KEY.fullmatch(key) is None:
            raise ValueError(f"not a blob key: {key!r}")
        return f"{self._root}/{key[:2]}/{key[2:4]}/{key}"

    @staticmethod
    def key_for(data: bytes, salt: bytes = b"") -> str:
        return hashlib.sha256(salt + data).hexdigest()

    async def put(self, data: bytes, salt: bytes = b"") -> str:
        """Store ``data`` durably and return its key. Runs the file I/O in a thread.

        With a ``salt`` (e.g. a queue id) the blob is private to its owner instead of
        shared by content, so the owner may delete it when done (see ``discard``).
        """
        return await asyncio.to_thread(self.put_sync, data, salt)

    def put_sync(self, data: bytes, salt: bytes = b"") -> str:
        key = self.key_for(data, salt)
        final = self.path(key)
        if final.exists():
            return key
        directory = final.parent
        if not directory.is_dir():
            self._make_dirs(directory)
        tmp = directory / f".{key}.{os.getpid()}.{id(data)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(directory)
        return key

    def _make_dirs(self, directory: Path) -> None:
        """Create missing levels and fsync each parent, so the new entries survive a crash."""
        missing = []
        d = directory
        while not d.is_dir():
            missing.append(d)
            d = d.parent
        for level in reversed(missing):
            level.mkdir(exist_ok=True)
            _fsync_dir(level.parent)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path(key).read_bytes)

    async def get_many(self, keys: Sequence[str]) -> list[bytes]:
        """Several blobs read in one thread hop (cheaper than one hop per small file)."""
        paths = [self._path(k) for k in keys]
        return await asyncio.to_thread(_read_all, paths)

    async def discard(self, keys: list[str]) -> None:
        """Delete private (salted) blobs whose owner is gone. Missing ones are fine: a
        crash between the owner's commit and this leaves an orphan, never a lost blob."""
        if keys:
            await asyncio.to_thread(self._discard, keys)

    def _discard(self, keys: list[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)


def _read_all(paths: list[str]) -> list[bytes]:
    out = []
    for path in paths:
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
