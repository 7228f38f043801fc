"""Trainer step 1, the corpus: ``--file``/``--dir`` inputs, sorted and deduplicated (the corpus order), and their
short, location-independent names."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from shared.audio import AUDIO_FILE_SUFFIXES
from shared.errors import ParameterError

__all__ = ["AUDIO_EXTENSIONS", "discover_audio_files", "corpus_names"]

AUDIO_EXTENSIONS = AUDIO_FILE_SUFFIXES  # what the front end decodes


def discover_audio_files(files: Iterable[str | Path] = (), dirs: Iterable[str | Path] = ()) -> list[Path]:
    """The corpus: ``files`` plus audio files found recursively under ``dirs``, resolved, deduplicated, sorted.

    Raises
    ------
    ParameterError
        A ``--dir`` that is not a directory.
    """
    found: set[Path] = set()
    for name in files:
        found.add(Path(name).expanduser().resolve())
    for name in dirs:
        root = Path(name).expanduser()
        if not root.is_dir():
            raise ParameterError(f"--dir {root}: not a directory")
        for path in root.rglob("*"):
            if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
                found.add(path.resolve())
    return sorted(found, key=lambda p: str(p))


def corpus_names(paths: Sequence[Path]) -> list[str]:
    """Short, location-independent names: paths relative to the inputs' common folder (POSIX separators)."""
    if not paths:
        return []
    if len(paths) == 1:
        return [paths[0].name]
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(root).as_posix() for p in paths]
