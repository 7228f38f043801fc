"""The trainer's pure logic (no Ray): files → cached per-file features → fitted perception → oracle → model file.

Steps, each a plain function so the Ray fan-out in :mod:`services.trainer.distributed` and a serial run share them:

1. :func:`discover_audio_files` — ``--file``/``--dir`` inputs, sorted and deduplicated (the corpus order).
2. :func:`analyze_path` — one file through :func:`services.encoder.perception.analyze_file` (the live front end and
   segmenter), cached per file in a :class:`FeatureCache` keyed by sha256 of the file's bytes + the feature settings.
   Unreadable, empty or onset-less files become a :class:`FileOutcome` with ``reason`` set (skipped, reported).
3. :func:`fit_perception` — PCA + quantizers per view, in memory (k-means) or streamed per file (MiniBatchKMeans)
   for a corpus too large for memory.
4. :func:`build_model_parts` — tokens per event, threshold (``"auto"``: Information Rate maximum), a continuous
   :class:`~services.oracle.audio_oracle.AudioOracle` on the primary view's (PCA) features and a token factor oracle,
   states in corpus order, packed as an :class:`~services.oracle.stage.OracleStage`.
5. :func:`train` — all of it with a pluggable ``analyze_many`` (serial here, Ray in ``distributed``); writes
   ``model.json`` + ``.safetensors`` (deterministic bytes) and ``<stem>.stats.json`` (timings, nodes).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from shared.config import MusicHalConfig
from shared.audio import AUDIO_FILE_SUFFIXES
from shared.errors import MusicHalError, ParameterError
from shared.messages import EventDescriptors

__all__ = [
    "AUDIO_EXTENSIONS",
    "FEATURE_CACHE_VERSION",
    "FileOutcome",
    "FeatureCache",
    "TrainingResult",
    "discover_audio_files",
    "corpus_names",
    "file_sha256",
    "feature_settings",
    "cache_key",
    "make_perception",
    "analyze_path",
    "analyze_batch",
    "fit_perception",
    "build_model_parts",
    "stats_path_for",
    "default_cache_dir",
    "train",
]

AUDIO_EXTENSIONS = AUDIO_FILE_SUFFIXES  # what the front end decodes
FEATURE_CACHE_VERSION = 1
#: Events up to which PCA + k-means are fitted on all features at once; larger corpora stream (partial fit).
IN_MEMORY_EVENTS = 250_000
#: Events the Information Rate threshold sweep looks at (a contiguous prefix of the corpus).
IR_MAX_EVENTS = 20_000

_DESCRIPTOR_FIELDS = ("onset_s", "duration_s", "rms", "velocity", "f0_hz", "f0_confidence", "chroma_peaks")


# ---------------------------------------------------------------------------------------------- inputs
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


def file_sha256(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checkpoint_hash(model: str) -> Optional[str]:
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
    return {"cache_version": FEATURE_CACHE_VERSION, "views": info["views"], "primary_view": info["primary_view"],
            "hybrid": info["hybrid"], "traditional": info["traditional"], "wav2vec": wav2vec,
            "sample_rate_hz": config.audio.sample_rate_hz, "input_channel": config.audio.input_channel,
            "segmenter": dataclasses.asdict(config.segmenter)}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def cache_key(sha256: str, settings: Mapping[str, Any]) -> str:
    """sha256 of the file's content hash and the canonical JSON of the feature settings."""
    return hashlib.sha256(sha256.encode() + b"\0" + _canonical(settings)).hexdigest()


def make_perception(config: MusicHalConfig, *, torch_threads: Optional[int] = None) -> Any:
    """The feature computer a worker uses (wav2vec loaded here when the config asks for it)."""
    from services.encoder.perception import HybridPerceptionModule

    return HybridPerceptionModule.from_config(config, torch_threads=torch_threads)


# ---------------------------------------------------------------------------------------------- per file
@dataclass
class FileOutcome:
    """One analysed (or skipped) file. ``views`` maps view → float32 ``(n_events, d)``; ``reason`` is set when skipped."""

    index: int
    name: str
    sha256: str = ""
    key: str = ""
    duration_s: float = 0.0
    descriptors: list[EventDescriptors] = field(default_factory=list)
    views: dict[str, np.ndarray] = field(default_factory=dict)
    reason: Optional[str] = None
    from_cache: bool = False
    seconds: float = 0.0
    node: str = ""
    settings: Optional[dict[str, Any]] = None
    events: int = 0

    def __post_init__(self) -> None:
        self.events = self.events or len(self.descriptors)

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def n_events(self) -> int:
        return len(self.descriptors) or self.events

    def without_arrays(self) -> "FileOutcome":
        return dataclasses.replace(self, descriptors=[], views={})


def _descriptor_row(d: EventDescriptors) -> list[Any]:
    return [float(d.onset_s), float(d.duration_s), float(d.rms), int(d.velocity), float(d.f0_hz),
            float(d.f0_confidence), [int(pc) for pc in d.chroma_peaks]]


def _descriptor_from_row(row: Sequence[Any]) -> EventDescriptors:
    values = dict(zip(_DESCRIPTOR_FIELDS, row))
    values["chroma_peaks"] = tuple(int(pc) for pc in values["chroma_peaks"])
    values["velocity"] = int(values["velocity"])
    return EventDescriptors(**values)


class FeatureCache:
    """Per-file features on disk: ``<key>.json`` (small: hashes, duration, descriptors) + ``<key>.<view>.npy``.

    Arrays are written first and the JSON last (each atomically), so a present JSON means a complete entry;
    nothing is pickled (``np.load(..., allow_pickle=False)``).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _json(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        return self._json(key).is_file()

    def load(self, key: str, *, index: int = 0, name: str = "") -> Optional[FileOutcome]:
        """The cached outcome for ``key`` (``None`` when absent or unreadable)."""
        try:
            meta = json.loads(self._json(key).read_text(encoding="utf-8"))
            views = {view: np.load(self.directory / f"{key}.{view}.npy", allow_pickle=False) for view in meta["views"]}
            descriptors = [_descriptor_from_row(row) for row in meta["descriptors"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if any(v.shape[0] != len(descriptors) for v in views.values()):
            return None
        return FileOutcome(index=index, name=name or meta.get("name", ""), sha256=meta["sha256"], key=key,
                           duration_s=float(meta["duration_s"]), descriptors=descriptors, views=views, from_cache=True,
                           settings=meta.get("settings"))

    def store(self, outcome: FileOutcome) -> None:
        if not outcome.ok or not outcome.key:
            raise ParameterError("only analysed files with a key can be cached")
        for view, array in outcome.views.items():
            final = self.directory / f"{outcome.key}.{view}.npy"
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, final)
        meta = {"sha256": outcome.sha256, "name": outcome.name, "duration_s": outcome.duration_s,
                "views": sorted(outcome.views), "settings": outcome.settings,
                "descriptors": [_descriptor_row(d) for d in outcome.descriptors]}
        final = self._json(outcome.key)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
        os.replace(tmp, final)


def _one_line(error: BaseException, path: Path, name: str) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = text.replace(str(path), name)
    return text[len(name) + 2:] if text.startswith(f"{name}: ") else text


def analyze_path(path: str | Path, *, index: int, name: str, config: MusicHalConfig, perception: Any,
                 settings: Mapping[str, Any], cache: Optional[FeatureCache]) -> FileOutcome:
    """Features of one file (from the cache when its content + settings were seen before).

    Never raises for bad audio: the outcome carries a one-line ``reason`` instead.
    """
    from shared.audio import probe_audio_file
    from services.encoder.perception import analyze_file

    path = Path(path)
    start = time.perf_counter()
    try:
        sha = file_sha256(path)
    except OSError as error:
        return FileOutcome(index=index, name=name, reason=f"unreadable ({_one_line(error, path, name)})")
    key = cache_key(sha, settings)
    if cache is not None:
        cached = cache.load(key, index=index, name=name)
        if cached is not None:
            cached.seconds = time.perf_counter() - start
            return cached
    try:
        duration_s = probe_audio_file(path).duration_s
        events, analyses = analyze_file(path, config, perception)
    except MusicHalError as error:
        return FileOutcome(index=index, name=name, sha256=sha, reason=_one_line(error, path, name))
    except Exception as error:  # a decoder's own failure on a corrupt file
        return FileOutcome(index=index, name=name, sha256=sha, reason=f"{type(error).__name__}: {_one_line(error, path, name)}")
    if not events:
        return FileOutcome(index=index, name=name, sha256=sha, duration_s=duration_s, reason="no onsets found")
    views = {view: np.stack([vectors[view] for _, vectors in analyses]).astype(np.float32)
             for view in analyses[0][1]}
    outcome = FileOutcome(index=index, name=name, sha256=sha, key=key, duration_s=duration_s,
                          descriptors=[d for d, _ in analyses], views=views, settings=dict(settings),
                          seconds=time.perf_counter() - start)
    if cache is not None:
        cache.store(outcome)
    return outcome


def analyze_batch(items: Sequence[tuple[int, str, str]], *, config: MusicHalConfig, perception: Any,
                  cache_dir: Optional[str], node: str = "") -> list[FileOutcome]:
    """``[(index, path, name)]`` → outcomes (a worker's unit of work)."""
    settings = feature_settings(config, perception)
    cache = FeatureCache(cache_dir) if cache_dir else None
    out = []
    for index, path, name in items:
        outcome = analyze_path(path, index=index, name=name, config=config, perception=perception,
                               settings=settings, cache=cache)
        outcome.node = node
        outcome.settings = settings
        out.append(outcome)
    return out


# ---------------------------------------------------------------------------------------------- fitting
def _new_model(config: MusicHalConfig, settings: Mapping[str, Any], seed: int) -> Any:
    from services.encoder.perception import PerceptionModel

    feature_info = {"views": list(settings["views"]), "primary_view": settings["primary_view"],
                    "hybrid": settings["hybrid"], "wav2vec": settings["wav2vec"], "traditional": settings["traditional"]}
    return PerceptionModel(views=settings["views"], primary_view=settings["primary_view"],
                           vocabulary_size=config.quantizer.vocabulary_size, l2_normalize=config.quantizer.l2_normalize,
                           seed=seed, pca_components=config.features.pca_components, feature_info=feature_info,
                           segmenter=config.segmenter, sample_rate_hz=config.audio.sample_rate_hz)


def fit_perception(model: Any, files: Callable[[], Iterator[FileOutcome]], *, total_events: int,
                   in_memory_events: int = IN_MEMORY_EVENTS, pca_sample_events: int = 50_000) -> Any:
    """Fit ``model`` (a :class:`PerceptionModel`) on every file ``files()`` yields, in corpus order.

    Up to ``in_memory_events`` events: :meth:`PerceptionModel.fit` on all of them (k-means). Beyond that each
    view's PCA is fitted on an evenly strided sample and the quantizer by ``partial_fit`` file by file.
    """
    if total_events < 1:
        raise ParameterError("cannot fit perception on zero events")
    if total_events <= in_memory_events:
        dicts: list[dict[str, np.ndarray]] = []
        for outcome in files():
            dicts.extend({view: outcome.views[view][row] for view in model.views} for row in range(outcome.n_events))
        return model.fit(dicts)
    from services.encoder.quantizer import PCAReducer

    stride = max(1, total_events // pca_sample_events)
    for view in model.views:
        if view in model.pca_views and model.pca_components:
            sample, seen = [], 0
            for outcome in files():
                rows = outcome.views[view]
                first = (-seen) % stride
                sample.append(rows[first::stride])
                seen += rows.shape[0]
            x = np.concatenate(sample)
            if x.shape[0] >= 2 and x.shape[1] > model.pca_components:
                model.pca[view] = PCAReducer(model.pca_components).fit(x)
    for outcome in files():
        for view in model.views:
            model.quantizers[view].partial_fit(model.project(view, outcome.views[view]))
    return model


# ---------------------------------------------------------------------------------------------- oracle
def build_model_parts(model: Any, files: Callable[[], Iterator[FileOutcome]], *, config: MusicHalConfig,
                      threshold: str | float = "auto") -> tuple[tuple[dict[str, Any], dict[str, np.ndarray]], dict[str, Any]]:
    """Tokens, threshold and the oracle memory for the corpus (states in corpus order).

    Returns ``(oracle_parts, facts)``: the :meth:`OracleStage.to_model_parts` pair and deterministic facts
    (threshold, its source, total IR, vocabulary usage per view).
    """
    from services.encoder.quantizer import usage_stats
    from services.oracle.audio_oracle import AudioOracle
    from services.oracle.factor_oracle import FactorOracle
    from services.oracle.information_rate import select_threshold, total_information_rate
    from services.oracle.stage import OracleStage

    view = model.primary_view
    projected: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    counts = {v: np.zeros(model.quantizers[v].n_centroids, dtype=np.int64) for v in model.views}
    for outcome in files():
        for v in model.views:
            t = model.quantizers[v].transform(model.project(v, outcome.views[v]))
            counts[v] += np.bincount(t, minlength=counts[v].size)
            if v == view:
                tokens.append(t)
        projected.append(model.project(view, outcome.views[view]).astype(np.float64))
    frames = np.concatenate(projected)
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ParameterError(f"threshold must be 'auto' or a number >= 0, got {threshold!r}")
        if frames.shape[0] >= 2:
            value, curve = select_threshold(frames[:IR_MAX_EVENTS])
        else:
            value, curve = 0.0, np.zeros((0, 2))
        source = "ir"
    else:
        value = float(threshold)
        if not np.isfinite(value) or value < 0:
            raise ParameterError(f"threshold must be a finite number >= 0, got {threshold!r}")
        curve, source = np.zeros((0, 2)), "given"
    audio = AudioOracle(value, frames.shape[1], capacity=frames.shape[0] + 1)
    token_oracle = FactorOracle()
    event_id = 0
    row = 0
    for outcome, file_tokens in zip(files(), tokens):
        n = outcome.n_events
        audio.extend(frames[row:row + n], tokens=file_tokens, descriptors=outcome.descriptors,
                     event_ids=range(event_id, event_id + n), source=outcome.name)
        token_oracle.extend(file_tokens)
        row += n
        event_id += n
    stage = OracleStage.from_memory(config, audio, token_oracle, threshold_source="trained")
    usage = {}
    for v, c in counts.items():
        stats = usage_stats(np.repeat(np.arange(c.size), c), model.vocabulary_size)
        usage[v] = {k: stats[k] for k in ("counts", "used", "used_fraction", "entropy_bits", "perplexity")}
    facts = {"threshold": value, "threshold_source": source,
             "information_rate": total_information_rate(audio.lrs) if audio.n_states > 1 else 0.0,
             "ir_curve": [[float(a), float(b)] for a, b in curve], "vocabulary_usage": usage,
             "states": int(audio.n_states - 1)}
    return stage.to_model_parts(), facts


# ---------------------------------------------------------------------------------------------- driver
def stats_path_for(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.stats.json")


def default_cache_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.cache")


@dataclass
class TrainingResult:
    """What :func:`train` did: the files, the deterministic training facts and the run statistics."""

    output: Optional[Path]
    outcomes: list[FileOutcome]
    training: dict[str, Any]
    stats: dict[str, Any]

    @property
    def skipped(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if not o.ok]


def _serial_analyze(items: list[tuple[int, str, str]], *, config: MusicHalConfig, cache_dir: Optional[str],
                    progress: Callable[[FileOutcome], None]) -> list[FileOutcome]:
    perception = make_perception(config)
    out = []
    for item in items:
        outcome = analyze_batch([item], config=config, perception=perception, cache_dir=cache_dir, node="local")[0]
        progress(outcome)
        out.append(outcome.without_arrays() if cache_dir else outcome)
    return out


def train(paths: Sequence[str | Path], *, config: MusicHalConfig, output: str | Path, threshold: str | float = "auto",
          cache_dir: Optional[str | Path] = None, analyze_many: Optional[Callable[..., list[FileOutcome]]] = None,
          progress: Optional[Callable[[FileOutcome], None]] = None, in_memory_events: int = IN_MEMORY_EVENTS,
          extra_stats: Optional[Mapping[str, Any]] = None) -> TrainingResult:
    """Train a model from ``paths`` (corpus order = the given order) and write it to ``output``.

    ``analyze_many(items, config=, cache_dir=, progress=)`` returns one :class:`FileOutcome` per
    ``(index, path, name)`` item (serial in-process by default; Ray in :mod:`services.trainer.distributed`).
    Outcomes without arrays are read back from the cache, so features need not stay in memory.

    Raises
    ------
    ParameterError
        No input files, or no file gave any event (nothing is written then).
    """
    from services.model_file import save_musichal_model
    from shared.model_io import atomic_write_bytes

    paths = [Path(p) for p in paths]
    if not paths:
        raise ParameterError("no input audio files (give --file or --dir)")
    output = Path(output)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(output)
    names = corpus_names(paths)
    items = [(i, str(p), n) for i, (p, n) in enumerate(zip(paths, names))]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    analyze_many = analyze_many or _serial_analyze
    outcomes = analyze_many(items, config=config, cache_dir=str(cache_dir), progress=progress or (lambda o: None))
    outcomes = sorted(outcomes, key=lambda o: o.index)
    if [o.index for o in outcomes] != list(range(len(items))):
        raise ParameterError("the analysis did not return exactly one outcome per file")
    timings["analysis_s"] = time.perf_counter() - t0
    usable = [o for o in outcomes if o.ok]
    if not usable:
        reasons = "; ".join(f"{o.name}: {o.reason}" for o in outcomes[:3])
        raise ParameterError(f"nothing usable to train on ({len(outcomes)} file(s) skipped: {reasons})")
    settings = usable[0].settings
    if any(o.settings != settings for o in usable):
        raise ParameterError("workers computed features with different settings (mixed checkpoints or configs?)")
    cache = FeatureCache(cache_dir)

    def files() -> Iterator[FileOutcome]:
        for outcome in usable:
            if outcome.views:
                yield outcome
                continue
            loaded = cache.load(outcome.key, index=outcome.index, name=outcome.name)
            if loaded is None:
                raise ParameterError(f"feature cache entry for {outcome.name} disappeared from {cache_dir}")
            yield loaded

    total_events = sum(o.n_events for o in usable)
    t1 = time.perf_counter()
    model = fit_perception(_new_model(config, settings, config.quantizer.seed), files, total_events=total_events,
                           in_memory_events=in_memory_events)
    timings["fit_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    oracle_parts, facts = build_model_parts(model, files, config=config, threshold=threshold)
    timings["oracle_s"] = time.perf_counter() - t2
    audio_s = sum(o.duration_s for o in usable)
    training = {
        "trainer": "musichal-train",
        "seed": config.quantizer.seed,
        "files": [{"name": o.name, "sha256": o.sha256, "duration_s": o.duration_s, "events": o.n_events} for o in usable],
        "skipped": [{"name": o.name, "reason": o.reason} for o in outcomes if not o.ok],
        "events": total_events,
        "audio_seconds": audio_s,
        "feature_settings": settings,
        **facts,
    }
    config_record = {name: dataclasses.asdict(getattr(config, name)) for name in ("audio", "segmenter", "features",
                                                                                    "wav2vec", "quantizer", "oracle")}
    config_record["wav2vec"].pop("use_gpu", None)  # runtime choice, not part of the features
    output.parent.mkdir(parents=True, exist_ok=True)
    t3 = time.perf_counter()
    save_musichal_model(output, oracle_parts=oracle_parts, perception=model, config=config_record, training=training)
    timings["write_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    nodes: dict[str, int] = {}
    for o in outcomes:
        nodes[o.node] = nodes.get(o.node, 0) + 1
    stats = {"timings": timings, "wall_s": timings["total_s"],
             "audio_hours_per_hour": (audio_s / timings["total_s"]) if timings["total_s"] > 0 else 0.0,
             "cache": {"directory": str(cache_dir), "hits": sum(o.from_cache for o in outcomes),
                       "misses": sum((not o.from_cache) and o.ok for o in outcomes)},
             "files": [{"name": o.name, "node": o.node, "seconds": o.seconds, "from_cache": o.from_cache,
                        "events": o.n_events if o.ok else 0, "skipped": o.reason} for o in outcomes],
             "files_per_node": nodes, **dict(extra_stats or {})}
    atomic_write_bytes(stats_path_for(output), json.dumps(stats, indent=2, sort_keys=True).encode())
    return TrainingResult(output=output, outcomes=outcomes, training=training, stats=stats)
