"""Trainer step 1, the corpus: ``--file``/``--dir`` inputs (audio and MIDI files), sorted and deduplicated (the
corpus order), their short, location-independent names, and the perception a corpus needs
(:func:`corpus_config`: one with MIDI files learns the symbolic view, the only one MIDI notes have)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from services.encoder.symbolic import MIDI_EXTENSIONS
from shared.audio import AUDIO_FILE_SUFFIXES
from shared.config import MusicHalConfig
from shared.errors import ParameterError

__all__ = [
    "AUDIO_EXTENSIONS",
    "CORPUS_EXTENSIONS",
    "discover_audio_files",
    "discover_corpus",
    "corpus_names",
    "is_midi",
    "corpus_config",
]

AUDIO_EXTENSIONS = AUDIO_FILE_SUFFIXES  # what the front end decodes
CORPUS_EXTENSIONS = (*AUDIO_FILE_SUFFIXES, *MIDI_EXTENSIONS)  # what the trainer learns from


def is_midi(path: str | Path) -> bool:
    """Whether the trainer reads ``path`` as a standard MIDI file (by its suffix, .mid or .midi)."""
    return Path(path).suffix.lower() in MIDI_EXTENSIONS


def corpus_config(config: MusicHalConfig, paths: Sequence[str | Path]) -> MusicHalConfig:
    """The config a corpus trains with: a corpus holding MIDI files learns the symbolic view (its audio files are
    heard through their notes); an audio corpus keeps ``config`` as it is.

    Raises
    ------
    ParameterError
        MIDI files with a wav2vec or hybrid perception asked for (MIDI has no audio to embed).
    """
    midi = [Path(p) for p in paths if is_midi(p)]
    if not midi or config.features.kind == "symbolic":
        return config
    if config.features.kind == "wav2vec" or config.features.hybrid:
        raise ParameterError(
            f"{midi[0].name}: MIDI files can only be learned by the symbolic view, not with --wav2vec or "
            "--hybrid-perception (train the MIDI files without them, or leave them out)"
        )
    return config.with_overrides({"features.kind": "symbolic"})


def discover_audio_files(files: Iterable[str | Path] = (), dirs: Iterable[str | Path] = ()) -> list[Path]:
    """The corpus: ``files`` plus audio files found recursively under ``dirs``, resolved, deduplicated, sorted
    (:func:`discover_corpus` adds the MIDI files).

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


def discover_corpus(
    files: Iterable[str | Path] = (), dirs: Iterable[str | Path] = (), *, symbolic: bool = False
) -> tuple[list[Path], list[Path]]:
    """``(corpus, MIDI files left out)``: :func:`discover_audio_files` plus the MIDI files under ``dirs`` when the
    corpus learns the symbolic view (``symbolic``) or holds no audio file at all. A folder of audio with MIDI files
    beside it (a rendering's sources) trains the audio view as it always did; its MIDI files are left out and
    returned, so the caller can say so. MIDI files named with ``--file`` are always in.
    """
    corpus = discover_audio_files(files, dirs)
    midi: set[Path] = set()
    for name in dirs:
        midi.update(p.resolve() for p in Path(name).expanduser().rglob("*") if p.is_file() and is_midi(p))
    midi -= set(corpus)
    has_audio = any(not is_midi(p) for p in corpus)
    if symbolic or not has_audio:
        return sorted(set(corpus) | midi, key=lambda p: str(p)), []
    return corpus, sorted(midi, key=lambda p: str(p))


def corpus_names(paths: Sequence[Path]) -> list[str]:
    """Short, location-independent names: paths relative to the inputs' common folder (POSIX separators)."""
    if not paths:
        return []
    if len(paths) == 1:
        return [paths[0].name]
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(root).as_posix() for p in paths]
