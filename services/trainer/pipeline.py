"""The trainer's driver (no Ray): files → feature shards → fitted perception → tokens → oracle → model file.

Each step is a plain function in its own module, so the Ray fan-out in :mod:`services.trainer.distributed` and a
serial run share them:

1. :mod:`~services.trainer.discovery` — ``--file``/``--dir`` inputs, sorted and deduplicated (the corpus order).
2. :mod:`~services.trainer.analysis` — one file through :func:`services.encoder.analysis.analyze_file` (the live
   front end and segmenter); the worker writes the features as a safetensors shard into the
   :class:`~services.trainer.shards.FeatureCache` (keyed by the file's sha256 + the feature settings) and returns a
   small :class:`~services.trainer.shards.FileOutcome`. A :class:`~services.trainer.hashing.HashIndex` keyed by
   ``(path, size, mtime)`` spares a resume the rehashing. Corrupt, empty or onset-less files are skipped and
   listed; a file a worker cannot open is an error (or skipped with ``skip_unreadable``).
3. :mod:`~services.trainer.fitting` — PCA + quantizers per view on a deterministic sample of events
   (``trainer.fit_sample_events``) read from the shards in parallel groups (:mod:`~services.trainer.batching`).
4. :mod:`~services.trainer.tokens` — tokens per file in parallel groups; :mod:`~services.trainer.oracle_build` —
   threshold (``"auto"``: Information Rate maximum), the continuous Audio Oracle on the primary view's (PCA)
   features and a token factor oracle, built by numba kernels with per-state metadata appended as columns,
   states in corpus order; above ``trainer.oracle_max_states`` the oracle holds whole files spread over the corpus.
5. :func:`train` (here) — all of it with pluggable ``analyze_many`` and ``map_groups`` (serial here, Ray in
   ``distributed``); writes ``model.json`` + ``.safetensors`` (deterministic bytes) and ``<stem>.stats.json``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.trainer.analysis import analyze_batch, make_perception
from services.trainer.batching import Mapper, file_groups, serial_map
from services.trainer.discovery import corpus_config, corpus_names
from services.trainer.fitting import fit_perception, new_perception_model
from services.trainer.hashing import HashIndex
from services.trainer.oracle_build import build_model_parts, oracle_files
from services.trainer.shards import FeatureCache, FileOutcome, descriptor_columns
from services.trainer.tokens import tokenize_group
from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.messages import EventDescriptors

__all__ = ["TrainingResult", "stats_path_for", "default_cache_dir", "train"]


def stats_path_for(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.stats.json")


def default_cache_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.cache")


@dataclass
class TrainingResult:
    """What :func:`train` did: the files, the deterministic training facts and the run statistics."""

    output: Path | None
    outcomes: list[FileOutcome]
    training: dict[str, Any]
    stats: dict[str, Any]

    @property
    def skipped(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if not o.ok]


def _serial_analyze(
    items: list[tuple[Any, ...]],
    *,
    config: MusicHalConfig,
    cache_dir: str | None,
    progress: Callable[[FileOutcome], None],
) -> list[FileOutcome]:
    perception = make_perception(config)
    out = []
    for item in items:
        outcome = analyze_batch([item], config=config, perception=perception, cache_dir=cache_dir, node="local")[0]
        progress(outcome)
        out.append(outcome)
    return out


def _prewarm_driver() -> None:
    """Load what the driver's serial steps need (scikit-learn, the oracle's numba kernels from their cache) while
    the workers analyse, so fit, tokenisation and the oracle build add little serial time after the parallel
    stage (Amdahl). A tiny throw-away build; nothing of it reaches the model, and any failure here only means
    the real step pays the loading itself."""
    try:
        import sklearn.cluster  # noqa: F401
        import sklearn.decomposition  # noqa: F401
        from safetensors.numpy import save  # noqa: F401

        from services.model_file import save_musichal_model  # noqa: F401
        from services.oracle.memory.audio_oracle import AudioOracle
        from services.oracle.memory.factor_oracle import FactorOracle
        from services.oracle.memory.information_rate import select_threshold, total_information_rate

        rng = np.random.default_rng(0)
        frames = rng.normal(size=(16, 2))
        select_threshold(frames)
        tokens = np.arange(16, dtype=np.int64) % 3
        oracle = AudioOracle(0.5, 2, capacity=17)
        descriptors = [
            EventDescriptors(
                onset_s=0.1 * i, duration_s=0.1, rms=0.1, velocity=64, f0_hz=220.0, f0_confidence=0.5, chroma_peaks=(9,)
            )
            for i in range(16)
        ]
        oracle.extend(frames, tokens=tokens, columns=descriptor_columns(descriptors), event_ids=np.arange(16))
        total_information_rate(oracle.lrs)
        FactorOracle(capacity=17).extend(tokens)
    except Exception:  # noqa: BLE001 - only a warm-up
        pass


def _node_label(node: str) -> str:
    return node[:12] if node else "local"


def train(
    paths: Sequence[str | Path],
    *,
    config: MusicHalConfig,
    output: str | Path,
    threshold: str | float = "auto",
    cache_dir: str | Path | None = None,
    analyze_many: Callable[..., list[FileOutcome]] | None = None,
    progress: Callable[[FileOutcome], None] | None = None,
    map_groups: Mapper | None = None,
    skip_unreadable: bool | None = None,
    extra_stats: Mapping[str, Any] | None = None,
) -> TrainingResult:
    """Train a model from ``paths`` (corpus order = the given order) and write it to ``output``.

    ``analyze_many(items, config=, cache_dir=, progress=)`` returns one small :class:`FileOutcome` per
    ``(index, path, name, known)`` item after writing the file's feature shard into ``cache_dir`` (serial
    in-process by default; Ray in :mod:`services.trainer.distributed`). ``map_groups(fn, arguments)`` runs the
    sampling and tokenisation groups (serial by default, Ray tasks there). The driver holds summaries, the
    fitting sample and the oracle's own arrays only.

    Raises
    ------
    ParameterError
        No input files; a file a worker could not open (unless ``skip_unreadable``, default
        ``config.trainer.skip_unreadable``), naming the file and the node; shards the driver cannot see (a
        cache folder that is not shared); or no file gave any event. Nothing is written then.
    """
    from services.model_file import save_musichal_model
    from shared.model_io import atomic_write_bytes

    paths = [Path(p) for p in paths]
    if not paths:
        raise ParameterError("no input audio files (give --file or --dir)")
    config = corpus_config(config, paths)  # MIDI files: the symbolic view
    skip_unreadable = config.trainer.skip_unreadable if skip_unreadable is None else bool(skip_unreadable)
    map_groups = map_groups or serial_map
    output = Path(output)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(output)
    cache = FeatureCache(cache_dir)
    hashes = HashIndex(cache_dir)
    names = corpus_names(paths)
    items = [(i, str(p), n, hashes.known(p)) for i, (p, n) in enumerate(zip(paths, names))]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    warm = threading.Thread(target=_prewarm_driver, name="musichal-train-prewarm", daemon=True)
    warm.start()
    analyze_many = analyze_many or _serial_analyze
    outcomes = analyze_many(items, config=config, cache_dir=str(cache_dir), progress=progress or (lambda o: None))
    warm.join()
    outcomes = sorted(outcomes, key=lambda o: o.index)
    if [o.index for o in outcomes] != list(range(len(items))):
        raise ParameterError("the analysis did not return exactly one outcome per file")
    timings["analysis_s"] = time.perf_counter() - t0
    for o in outcomes:
        hashes.record(paths[o.index], o.size, o.mtime_ns, o.sha256)
    hashes.save()  # before any error below: a fixed re-run hashes nothing that was hashed now
    faults = [o for o in outcomes if o.error]
    if faults:
        raise ParameterError(f"{faults[0].error} (node {_node_label(faults[0].node)})")
    unreadable = [o for o in outcomes if o.unreadable]
    if unreadable and not skip_unreadable:
        first = unreadable[0]
        more = f" ({len(unreadable) - 1} more unreadable file(s))" if len(unreadable) > 1 else ""
        raise ParameterError(
            f"{first.name}: cannot be read on node {_node_label(first.node)}: {first.reason}{more}; "
            "every node must see the corpus at the same paths, or give --skip-unreadable"
        )
    usable = [o for o in outcomes if o.ok]
    if not usable:
        reasons = "; ".join(f"{o.name}: {o.reason}" for o in outcomes[:3])
        raise ParameterError(f"nothing usable to train on ({len(outcomes)} file(s) skipped: {reasons})")
    settings = next(
        (o.settings for o in outcomes if o.settings is not None and o.settings_key == usable[0].settings_key), None
    )
    if settings is None or any(o.settings_key != usable[0].settings_key for o in usable):
        raise ParameterError("workers computed features with different settings (mixed checkpoints or configs?)")
    invisible = [o for o in usable if o.key not in cache]
    if invisible:
        o = invisible[0]
        raise ParameterError(
            f"the features of {o.name} were written on node {_node_label(o.node)} but {cache_dir} "
            "does not hold them here: on a cluster --cache-dir must be a folder every node shares"
        )

    total_events = sum(o.n_events for o in usable)
    t1 = time.perf_counter()
    model, sample_size = fit_perception(
        new_perception_model(config, settings, config.quantizer.seed),
        usable,
        cache_dir=str(cache_dir),
        sample_events=config.trainer.fit_sample_events,
        seed=config.quantizer.seed,
        map_groups=map_groups,
    )
    timings["fit_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    keep = oracle_files([o.n_events for o in usable], config.trainer.oracle_max_states)
    groups = file_groups([o.n_events for o in usable])
    tokenized = [
        r
        for part in map_groups(
            tokenize_group,
            [
                (str(cache_dir), [(usable[i].key, usable[i].name, bool(keep[i])) for i in group], model)
                for group in groups
            ],
        )
        for r in part
    ]
    timings["tokenize_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    oracle_parts, facts = build_model_parts(model, usable, tokenized, config=config, threshold=threshold)
    del tokenized
    timings["oracle_s"] = time.perf_counter() - t3
    audio_s = sum(o.duration_s for o in usable)
    training = {
        "trainer": "musichal-train",
        "seed": config.quantizer.seed,
        "files": [
            {"name": o.name, "sha256": o.sha256, "duration_s": o.duration_s, "events": o.n_events} for o in usable
        ],
        "skipped": [{"name": o.name, "reason": o.reason} for o in outcomes if not o.ok],
        "events": total_events,
        "audio_seconds": audio_s,
        "feature_settings": settings,
        "fit_sample_events": sample_size,
        "oracle_files": [o.name for o, k in zip(usable, keep) if k] if not keep.all() else "all",
        **facts,
    }
    config_record = {
        name: dataclasses.asdict(getattr(config, name))
        for name in ("audio", "segmenter", "features", "wav2vec", "quantizer", "oracle")
    }
    config_record["wav2vec"].pop("use_gpu", None)  # runtime choice, not part of the features
    output.parent.mkdir(parents=True, exist_ok=True)
    t4 = time.perf_counter()
    save_musichal_model(output, oracle_parts=oracle_parts, perception=model, config=config_record, training=training)
    timings["write_s"] = time.perf_counter() - t4
    timings["total_s"] = time.perf_counter() - t0
    nodes: dict[str, int] = {}
    for o in outcomes:
        nodes[o.node] = nodes.get(o.node, 0) + 1
    stats = {
        "timings": timings,
        "wall_s": timings["total_s"],
        "audio_hours_per_hour": (audio_s / timings["total_s"]) if timings["total_s"] > 0 else 0.0,
        "cache": {
            "directory": str(cache_dir),
            "hits": sum(o.from_cache for o in outcomes),
            "misses": sum((not o.from_cache) and o.ok for o in outcomes),
            "hashed": sum(o.hashed for o in outcomes),
        },
        "unreadable_skipped": [{"name": o.name, "node": o.node, "reason": o.reason} for o in unreadable],
        "oracle_states": facts["states"],
        "files": [
            {
                "name": o.name,
                "node": o.node,
                "seconds": o.seconds,
                "from_cache": o.from_cache,
                "hashed": o.hashed,
                "events": o.n_events if o.ok else 0,
                "skipped": o.reason,
            }
            for o in outcomes
        ],
        "files_per_node": nodes,
        **dict(extra_stats or {}),
    }
    atomic_write_bytes(stats_path_for(output), json.dumps(stats, indent=2, sort_keys=True).encode())
    return TrainingResult(output=output, outcomes=outcomes, training=training, stats=stats)
