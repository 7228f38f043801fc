"""Trainer step 2, analysis: one file through :func:`services.encoder.analysis.analyze_file` (the live front end and
segmenter), its features written as a shard into the :class:`~services.trainer.shards.FeatureCache` (keyed by the
file's sha256 + the feature settings); a small :class:`~services.trainer.shards.FileOutcome` comes back. Corrupt,
empty or onset-less files are skipped with a one-line reason; a file a worker cannot open is marked unreadable.
The wav2vec path runs it in two stages (:func:`segment_batch` on CPU tasks, :func:`encode_pending` on encoder
actors)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.trainer.hashing import file_sha256
from services.trainer.shards import FEATURE_CACHE_VERSION, FeatureCache, FileOutcome, descriptor_columns
from shared.config import MusicHalConfig
from shared.errors import MusicHalError

__all__ = [
    "feature_settings",
    "cache_key",
    "make_perception",
    "analyze_path",
    "analyze_batch",
    "segmentation_config",
    "segment_batch",
    "encode_pending",
]


def _checkpoint_hash(model: str) -> str | None:
    """sha256 over a local checkpoint folder's weight and config files (None for a hub name not on disk)."""
    root = Path(model)
    if not root.is_dir():
        try:
            from huggingface_hub import snapshot_download

            root = Path(snapshot_download(model, local_files_only=True))
        except Exception:
            return None
    digest = hashlib.sha256()
    names = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    if not names:
        return None
    for path in names:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def feature_settings(config: MusicHalConfig, perception: Any) -> dict[str, Any]:
    """Everything that determines a file's features (the cache key and the model's record of them)."""
    info = perception.describe()
    wav2vec = info.get("wav2vec")
    if isinstance(wav2vec, dict):
        wav2vec = {k: v for k, v in wav2vec.items() if k != "device"}
        wav2vec["checkpoint_sha256"] = _checkpoint_hash(str(wav2vec.get("model")))
        wav2vec["batch_size"] = config.wav2vec.batch_size
    settings = {
        "cache_version": FEATURE_CACHE_VERSION,
        "views": info["views"],
        "primary_view": info["primary_view"],
        "hybrid": info["hybrid"],
        "traditional": info["traditional"],
        "wav2vec": wav2vec,
        "slice_notes": info.get("slice_notes"),
        "sample_rate_hz": config.audio.sample_rate_hz,
        "input_channel": config.audio.input_channel,
        "segmenter": dataclasses.asdict(config.segmenter),
    }
    if info.get("symbolic") is not None:  # the symbolic view and how MIDI notes become events
        settings["symbolic"] = {
            **info["symbolic"],
            "chord_window_ms": config.features.chord_window_ms,
            "midi_drums": config.features.midi_drums,
        }
    return settings


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def cache_key(sha256: str, settings: Mapping[str, Any]) -> str:
    """sha256 of the file's content hash and the canonical JSON of the feature settings."""
    return hashlib.sha256(sha256.encode() + b"\0" + _canonical(settings)).hexdigest()


def make_perception(config: MusicHalConfig, *, torch_threads: int | None = None) -> Any:
    """The feature computer a worker uses (wav2vec loaded here when the config asks for it)."""
    from services.encoder.views import HybridPerceptionModule

    return HybridPerceptionModule.from_config(config, torch_threads=torch_threads)


def _one_line(error: BaseException, path: Path, name: str) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = text.replace(str(path), name)
    return text[len(name) + 2 :] if text.startswith(f"{name}: ") else text


def analyze_path(
    path: str | Path,
    *,
    index: int,
    name: str,
    config: MusicHalConfig,
    perception: Any,
    settings: Mapping[str, Any],
    cache: FeatureCache | None,
    known: Sequence[Any] | None = None,
    window_batches: list | None = None,
) -> FileOutcome:
    """Features of one file, written as a shard to ``cache`` (a summary without arrays is returned then).

    ``known`` = ``(size, mtime_ns, sha256)`` from the driver's :class:`HashIndex`: when size and mtime still
    match, the file is not hashed again. A cached shard is only checked (its header), not read.
    Never raises for bad audio: the outcome carries a one-line ``reason``; ``unreadable`` when the file cannot
    be opened here (missing on this node, no permission). With ``window_batches`` (the wav2vec path's first
    stage, ``perception`` without wav2vec) the windows are collected there in analysis batches and the outcome
    is returned with its arrays and ``pending`` set, unstored: :func:`encode_pending` finishes it.
    """
    from services.encoder.analysis import analyze_file
    from services.encoder.symbolic import MIDI_EXTENSIONS, analyze_midi_file
    from shared.audio import probe_audio_file

    path = Path(path)
    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        st = os.stat(path)
        with open(path, "rb"):
            pass
    except OSError as error:
        return FileOutcome(
            index=index, name=name, reason=f"unreadable ({_one_line(error, path, name)})", unreadable=True
        )
    hashed = False
    if known is not None and (int(known[0]), int(known[1])) == (st.st_size, st.st_mtime_ns):
        sha = str(known[2])
    else:
        try:
            sha = file_sha256(path)
        except OSError as error:
            return FileOutcome(
                index=index, name=name, reason=f"unreadable ({_one_line(error, path, name)})", unreadable=True
            )
        hashed = True
    key = cache_key(sha, settings)
    common = {
        "index": index,
        "name": name,
        "sha256": sha,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "hashed": hashed,
        "settings": dict(settings),
    }
    if cache is not None:
        head = cache.header(key)
        if head is not None:
            return FileOutcome(
                **common,
                key=key,
                duration_s=float(head["duration_s"]),
                events=int(head["events"]),
                from_cache=True,
                seconds=time.perf_counter() - start,
                cpu_s=time.process_time() - cpu_start,
            )
    try:
        if path.suffix.lower() in MIDI_EXTENSIONS:  # notes → events with the live grouping (no audio, no windows)
            events, analyses, duration_s = analyze_midi_file(path, config, perception)
        else:
            duration_s = probe_audio_file(path).duration_s
            events, analyses = analyze_file(path, config, perception, window_batches=window_batches)
    except MusicHalError as error:
        return FileOutcome(**common, reason=_one_line(error, path, name))
    except Exception as error:  # a decoder's own failure on a corrupt file
        return FileOutcome(**common, reason=f"{type(error).__name__}: {_one_line(error, path, name)}")
    if not events:
        return FileOutcome(
            **common,
            duration_s=duration_s,
            reason="no notes found" if path.suffix.lower() in MIDI_EXTENSIONS else "no onsets found",
        )
    views = {view: np.stack([vectors[view] for _, vectors in analyses]).astype(np.float32) for view in analyses[0][1]}
    outcome = FileOutcome(
        **common,
        key=key,
        duration_s=duration_s,
        columns=descriptor_columns([d for d, _ in analyses]),
        views=views,
        seconds=time.perf_counter() - start,
        cpu_s=time.process_time() - cpu_start,
    )
    if window_batches is not None:
        outcome.pending = True
        return outcome
    if cache is None:
        return outcome
    try:
        cache.store(outcome)
    except OSError as error:
        outcome.error = f"cannot write the features of {name} to {cache.directory}: {error}"
    return outcome.without_arrays()


def analyze_batch(
    items: Sequence[Sequence[Any]], *, config: MusicHalConfig, perception: Any, cache_dir: str | None, node: str = ""
) -> list[FileOutcome]:
    """``[(index, path, name[, known])]`` → outcomes (a worker's unit of work; shards go to ``cache_dir``)."""
    settings = getattr(perception, "_trainer_settings", None)
    if settings is None:
        settings = feature_settings(config, perception)
        try:
            perception._trainer_settings = settings  # hashing a checkpoint once per worker, not per batch
        except AttributeError:
            pass
    cache = FeatureCache(cache_dir) if cache_dir else None
    digest = hashlib.sha256(_canonical(settings)).hexdigest()
    out: list[FileOutcome] = []
    sent = False
    for item in items:
        index, path, name = item[0], item[1], item[2]
        known = item[3] if len(item) > 3 else None
        outcome = analyze_path(
            path,
            index=index,
            name=name,
            config=config,
            perception=perception,
            settings=settings,
            cache=cache,
            known=known,
        )
        outcome.node = node
        outcome.settings_key = digest
        if sent:
            outcome.settings = None  # one outcome per batch carries them
        sent = sent or outcome.settings is not None
        out.append(outcome)
    return out


def segmentation_config(config: MusicHalConfig) -> MusicHalConfig:
    """The wav2vec path's first stage: the same front end, segmenter and traditional features, no wav2vec."""
    return config.with_overrides({"features.kind": "traditional", "features.hybrid": False})


def segment_batch(
    items: Sequence[Sequence[Any]],
    *,
    config: MusicHalConfig,
    perception: Any,
    settings: Mapping[str, Any],
    cache_dir: str,
    node: str = "",
) -> tuple[list[FileOutcome], list[dict]]:
    """First stage of the wav2vec path (a CPU task): decode, segment, descriptors and traditional features.

    ``perception`` is built from :func:`segmentation_config`; ``settings`` are the full feature settings (with
    the wav2vec checkpoint), so cache keys are those of :func:`analyze_batch`. Returns the summaries (files
    already cached, skipped or unreadable are final; the others are ``pending``) and one payload per pending
    file (``index``, descriptor ``columns``, the ``traditional`` view, the windows in their analysis ``batches``).
    """
    cache = FeatureCache(cache_dir)
    digest = hashlib.sha256(_canonical(settings)).hexdigest()
    summaries: list[FileOutcome] = []
    payloads: list[dict] = []
    for item in items:
        batches: list = []
        outcome = analyze_path(
            item[1],
            index=item[0],
            name=item[2],
            config=config,
            perception=perception,
            settings=settings,
            cache=cache,
            known=item[3] if len(item) > 3 else None,
            window_batches=batches,
        )
        outcome.node = node
        outcome.settings_key = digest
        if outcome.pending:
            payloads.append(
                {
                    "index": outcome.index,
                    "columns": outcome.columns,
                    "traditional": outcome.views.get("traditional"),
                    "batches": batches,
                }
            )
            outcome = outcome.without_arrays()
        summaries.append(outcome)
    return summaries, payloads


def encode_pending(
    summaries: Sequence[FileOutcome],
    payloads: Sequence[dict],
    *,
    perception: Any,
    settings: Mapping[str, Any],
    cache_dir: str,
    sample_rate_hz: int,
    node: str = "",
) -> list[FileOutcome]:
    """Second stage of the wav2vec path (an encoder actor): the wav2vec view of each pending file, batch by batch
    exactly as :func:`analyze_path` would, then the shard is written. Returns the final summaries."""
    cache = FeatureCache(cache_dir)
    by_index = {payload["index"]: payload for payload in payloads}
    out = []
    for summary in summaries:
        payload = by_index[summary.index]
        start, cpu_start = time.perf_counter(), time.process_time()
        rows = [
            np.asarray(row, dtype=np.float32)
            for batch in payload["batches"]
            for row in perception.wav2vec.extract_batch(list(batch), sample_rate_hz)
        ]
        views = {"wav2vec": np.stack(rows).astype(np.float32)}
        if "traditional" in settings["views"]:
            views["traditional"] = payload["traditional"]
        outcome = dataclasses.replace(
            summary,
            views=views,
            columns=payload["columns"],
            pending=False,
            node=node,
            seconds=summary.seconds + time.perf_counter() - start,
            cpu_s=summary.cpu_s + time.process_time() - cpu_start,
            settings=dict(settings),
        )
        try:
            cache.store(outcome)
        except OSError as error:
            outcome.error = f"cannot write the features of {summary.name} to {cache.directory}: {error}"
        out.append(outcome.without_arrays())
    return out
