"""Trainer step 2a, content hashes: a file's sha256 and the ``(path, size, mtime)`` → sha256 index in the cache
folder that spares a resume the rehashing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["HASH_INDEX", "file_sha256", "HashIndex"]

#: ``(path, size, mtime)`` → sha256 index in the cache folder.
HASH_INDEX = "hashes.json"


def file_sha256(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


class HashIndex:
    """``(path, size, mtime)`` → content sha256, kept in ``<cache>/hashes.json``: a resume rehashes no unchanged file.

    The driver looks a file up (one ``stat``) and passes the triple to the worker, which re-checks size and
    mtime on its own side before trusting the hash; a changed file is hashed again.
    """

    def __init__(self, directory: str | Path) -> None:
        self.file = Path(directory) / HASH_INDEX
        try:
            entries = json.loads(self.file.read_text(encoding="utf-8"))
            self.entries = {str(k): [int(v[0]), int(v[1]), str(v[2])] for k, v in entries.items()}
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            self.entries = {}

    def known(self, path: str | Path) -> tuple[int, int, str] | None:
        entry = self.entries.get(str(path))
        if entry is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (entry[0], entry[1], entry[2]) if (st.st_size, st.st_mtime_ns) == (entry[0], entry[1]) else None

    def record(self, path: str | Path, size: int, mtime_ns: int, sha256: str) -> None:
        if size >= 0 and mtime_ns >= 0 and sha256:
            self.entries[str(path)] = [int(size), int(mtime_ns), sha256]

    def save(self) -> None:
        from shared.model_io import atomic_write_bytes

        self.file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.file, json.dumps(self.entries, sort_keys=True).encode())
