"""Trainer step 2b, the shard cache: a file's analysis as a :class:`FileOutcome` and its features as a safetensors
shard in the :class:`FeatureCache` (descriptor columns, views, a small JSON header; nothing pickled)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.oracle.memory.states import MAX_CHROMA_PEAKS, SLICE_COLUMNS, slice_columns, slice_fields
from shared.errors import ParameterError
from shared.messages import EventDescriptors

__all__ = [
    "FEATURE_CACHE_VERSION",
    "DESCRIPTOR_FLOATS",
    "descriptor_columns",
    "descriptors_from_columns",
    "FileOutcome",
    "FeatureCache",
]

FEATURE_CACHE_VERSION = 3  # 3: slice notes and expression columns

DESCRIPTOR_FLOATS = ("onset_s", "duration_s", "rms", "f0_hz", "f0_confidence")


def descriptor_columns(descriptors: Sequence[EventDescriptors]) -> dict[str, np.ndarray]:
    """Per-event descriptors as columns (what a feature shard stores and the oracle appends in numpy)."""
    n = len(descriptors)
    columns: dict[str, np.ndarray] = {
        name: np.fromiter((getattr(d, name) for d in descriptors), dtype=np.float64, count=n)
        for name in DESCRIPTOR_FLOATS
    }
    columns["velocity"] = np.fromiter((d.velocity for d in descriptors), dtype=np.int64, count=n)
    chroma = np.full((n, MAX_CHROMA_PEAKS), -1, dtype=np.int8)
    for row, d in enumerate(descriptors):
        peaks = d.chroma_peaks[:MAX_CHROMA_PEAKS]
        chroma[row, : len(peaks)] = peaks
    columns["chroma"] = chroma
    columns.update(slice_columns(descriptors))
    return columns


def descriptors_from_columns(columns: Mapping[str, np.ndarray]) -> list[EventDescriptors]:
    floats = {name: columns[name].tolist() for name in DESCRIPTOR_FLOATS}
    velocity = columns["velocity"].tolist()
    slices = slice_fields(columns)
    out = []
    for row, peaks in enumerate(columns["chroma"].tolist()):
        out.append(
            EventDescriptors(
                **{name: floats[name][row] for name in DESCRIPTOR_FLOATS},
                velocity=int(velocity[row]),
                chroma_peaks=tuple(int(pc) for pc in peaks if pc >= 0),
                **slices[row],
            )
        )
    return out


@dataclass
class FileOutcome:
    """One analysed (or skipped) file: a worker's small summary, plus arrays only when no cache is used.

    ``columns`` holds the descriptor columns (:func:`descriptor_columns`), ``views`` maps view → float32
    ``(n_events, d)``. ``reason`` is set when the file is skipped; ``unreadable`` when the worker could not open
    it (an error unless ``--skip-unreadable``); ``error`` for a fault of the run (the cache is not writable).
    """

    index: int
    name: str
    sha256: str = ""
    key: str = ""
    duration_s: float = 0.0
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    views: dict[str, np.ndarray] = field(default_factory=dict)
    reason: str | None = None
    from_cache: bool = False
    seconds: float = 0.0
    node: str = ""
    settings: dict[str, Any] | None = None
    events: int = 0
    unreadable: bool = False
    hashed: bool = False
    size: int = -1
    mtime_ns: int = -1
    error: str | None = None
    settings_key: str = ""  # sha256 of the settings (a worker sends the full settings once per batch)
    pending: bool = False  # decoded and segmented; the wav2vec stage still has to add its view
    cpu_s: float = 0.0  # CPU time of the worker process (all its threads) spent on this file

    def __post_init__(self) -> None:
        if self.columns and not self.events:
            self.events = int(self.columns["onset_s"].shape[0])

    @property
    def ok(self) -> bool:
        return self.reason is None and self.error is None

    @property
    def n_events(self) -> int:
        return self.events

    @property
    def descriptors(self) -> list[EventDescriptors]:
        return descriptors_from_columns(self.columns) if self.columns else []

    def without_arrays(self) -> FileOutcome:
        return dataclasses.replace(self, columns={}, views={})


class FeatureCache:
    """Feature shards on disk: ``<key>.safetensors`` per file (views ``view.<name>``, descriptor columns
    ``desc.<name>``, a small JSON header: hashes, duration, events, settings).

    A shard is written to a temporary name and renamed, so a present shard is complete; :meth:`header` also checks
    the file's length against the safetensors header (a truncated copy reads as absent). Nothing is pickled.
    On a cluster the folder must be one path every node shares (workers write, the driver reads).
    """

    def __init__(self, directory: str | Path, *, create: bool = True) -> None:
        self.directory = Path(directory)
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.header(key) is not None

    def header(self, key: str) -> dict[str, Any] | None:
        """The shard's JSON header (``None`` when absent, truncated or not ours): reads a few hundred bytes."""
        try:
            with open(self.path(key), "rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                if not 2 <= length <= 1 << 24:
                    return None
                header = json.loads(handle.read(length))
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
            if size != 8 + length + end:
                return None
            meta = json.loads(header["__metadata__"]["musichal"])
            return meta if meta.get("cache_version") == FEATURE_CACHE_VERSION else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load(
        self, key: str, *, index: int = 0, name: str = "", views: Sequence[str] | None = None, columns: bool = True
    ) -> FileOutcome | None:
        """The cached outcome for ``key`` with its arrays (``None`` when absent or unreadable)."""
        from safetensors import safe_open

        meta = self.header(key)
        if meta is None:
            return None
        wanted = list(meta["views"]) if views is None else list(views)
        try:
            with safe_open(str(self.path(key)), framework="numpy") as handle:
                arrays = {view: handle.get_tensor(f"view.{view}") for view in wanted}
                cols = (
                    {
                        name: handle.get_tensor(f"desc.{name}")
                        for name in DESCRIPTOR_FLOATS + ("velocity", "chroma") + SLICE_COLUMNS
                    }
                    if columns
                    else {}
                )
        except Exception:  # noqa: BLE001 - safetensors raises its own errors for a broken file
            return None
        n = int(meta["events"])
        if any(a.shape[0] != n for a in list(arrays.values()) + list(cols.values())):
            return None
        return FileOutcome(
            index=index,
            name=name or meta.get("name", ""),
            sha256=meta["sha256"],
            key=key,
            duration_s=float(meta["duration_s"]),
            columns=cols,
            views=arrays,
            from_cache=True,
            settings=meta.get("settings"),
            events=n,
        )

    def store(self, outcome: FileOutcome) -> None:
        from safetensors.numpy import save

        if not outcome.ok or not outcome.key or not outcome.columns:
            raise ParameterError("only analysed files with a key and their arrays can be cached")
        tensors = {f"view.{view}": np.ascontiguousarray(a, dtype=np.float32) for view, a in outcome.views.items()}
        tensors.update({f"desc.{name}": np.ascontiguousarray(a) for name, a in outcome.columns.items()})
        meta = {
            "cache_version": FEATURE_CACHE_VERSION,
            "sha256": outcome.sha256,
            "name": outcome.name,
            "duration_s": outcome.duration_s,
            "events": outcome.n_events,
            "views": sorted(outcome.views),
            "settings": outcome.settings,
        }
        payload = save(tensors, metadata={"musichal": json.dumps(meta, sort_keys=True)})
        final = self.path(outcome.key)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, final)
