"""The trainer's pure logic (no Ray): files → feature shards → fitted perception → tokens → oracle → model file.

Steps, each a plain function so the Ray fan-out in :mod:`services.trainer.distributed` and a serial run share them:

1. :func:`discover_audio_files` — ``--file``/``--dir`` inputs, sorted and deduplicated (the corpus order).
2. :func:`analyze_path` — one file through :func:`services.encoder.analysis.analyze_file` (the live front end and
   segmenter); the worker writes the features as a safetensors shard into the :class:`FeatureCache` (keyed by the
   file's sha256 + the feature settings) and returns a small :class:`FileOutcome`. A :class:`HashIndex` keyed by
   ``(path, size, mtime)`` spares a resume the rehashing. Corrupt, empty or onset-less files are skipped and
   listed; a file a worker cannot open is an error (or skipped with ``skip_unreadable``).
3. :func:`fit_perception` — PCA + quantizers per view on a deterministic sample of events (:func:`sample_rows`,
   ``trainer.fit_sample_events``) read from the shards in parallel groups.
4. :func:`tokenize_group` — tokens per file in parallel groups; :func:`build_model_parts` — threshold
   (``"auto"``: Information Rate maximum), the continuous Audio Oracle on the primary view's (PCA) features and a
   token factor oracle, built by numba kernels with per-state metadata appended as columns, states in corpus
   order; above ``trainer.oracle_max_states`` the oracle holds whole files spread over the corpus
   (:func:`oracle_files`).
5. :func:`train` — all of it with pluggable ``analyze_many`` and ``map_groups`` (serial here, Ray in
   ``distributed``); writes ``model.json`` + ``.safetensors`` (deterministic bytes) and ``<stem>.stats.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from shared.config import MusicHalConfig
from shared.audio import AUDIO_FILE_SUFFIXES
from shared.errors import MusicHalError, ParameterError
from shared.messages import EventDescriptors
from services.oracle.memory.states import MAX_CHROMA_PEAKS, SLICE_COLUMNS, slice_columns, slice_fields

__all__ = [
    "AUDIO_EXTENSIONS",
    "FEATURE_CACHE_VERSION",
    "FileOutcome",
    "FeatureCache",
    "TrainingResult",
    "discover_audio_files",
    "corpus_names",
    "file_sha256",
    "HashIndex",
    "descriptor_columns",
    "descriptors_from_columns",
    "sample_rows",
    "read_sample_group",
    "tokenize_group",
    "oracle_files",
    "serial_map",
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
FEATURE_CACHE_VERSION = 3  # 3: slice notes and expression columns
#: Events the Information Rate threshold sweep looks at (a contiguous prefix of the oracle's states).
IR_MAX_EVENTS = 20_000
#: A unit of parallel sampling/tokenisation work: consecutive files up to this many events (or files).
GROUP_EVENTS = 50_000
GROUP_FILES = 64
#: ``(path, size, mtime)`` → sha256 index in the cache folder.
HASH_INDEX = "hashes.json"

DESCRIPTOR_FLOATS = ("onset_s", "duration_s", "rms", "f0_hz", "f0_confidence")


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
            "slice_notes": info.get("slice_notes"),
            "sample_rate_hz": config.audio.sample_rate_hz, "input_channel": config.audio.input_channel,
            "segmenter": dataclasses.asdict(config.segmenter)}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def cache_key(sha256: str, settings: Mapping[str, Any]) -> str:
    """sha256 of the file's content hash and the canonical JSON of the feature settings."""
    return hashlib.sha256(sha256.encode() + b"\0" + _canonical(settings)).hexdigest()


def make_perception(config: MusicHalConfig, *, torch_threads: Optional[int] = None) -> Any:
    """The feature computer a worker uses (wav2vec loaded here when the config asks for it)."""
    from services.encoder.views import HybridPerceptionModule

    return HybridPerceptionModule.from_config(config, torch_threads=torch_threads)


# ---------------------------------------------------------------------------------------------- per file
def descriptor_columns(descriptors: Sequence[EventDescriptors]) -> dict[str, np.ndarray]:
    """Per-event descriptors as columns (what a feature shard stores and the oracle appends in numpy)."""
    n = len(descriptors)
    columns: dict[str, np.ndarray] = {name: np.fromiter((getattr(d, name) for d in descriptors), dtype=np.float64, count=n)
                                      for name in DESCRIPTOR_FLOATS}
    columns["velocity"] = np.fromiter((d.velocity for d in descriptors), dtype=np.int64, count=n)
    chroma = np.full((n, MAX_CHROMA_PEAKS), -1, dtype=np.int8)
    for row, d in enumerate(descriptors):
        peaks = d.chroma_peaks[:MAX_CHROMA_PEAKS]
        chroma[row, :len(peaks)] = peaks
    columns["chroma"] = chroma
    columns.update(slice_columns(descriptors))
    return columns


def descriptors_from_columns(columns: Mapping[str, np.ndarray]) -> list[EventDescriptors]:
    floats = {name: columns[name].tolist() for name in DESCRIPTOR_FLOATS}
    velocity = columns["velocity"].tolist()
    slices = slice_fields(columns)
    out = []
    for row, peaks in enumerate(columns["chroma"].tolist()):
        out.append(EventDescriptors(**{name: floats[name][row] for name in DESCRIPTOR_FLOATS}, velocity=int(velocity[row]),
                                    chroma_peaks=tuple(int(pc) for pc in peaks if pc >= 0), **slices[row]))
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
    reason: Optional[str] = None
    from_cache: bool = False
    seconds: float = 0.0
    node: str = ""
    settings: Optional[dict[str, Any]] = None
    events: int = 0
    unreadable: bool = False
    hashed: bool = False
    size: int = -1
    mtime_ns: int = -1
    error: Optional[str] = None
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

    def without_arrays(self) -> "FileOutcome":
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

    def header(self, key: str) -> Optional[dict[str, Any]]:
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

    def load(self, key: str, *, index: int = 0, name: str = "", views: Optional[Sequence[str]] = None,
             columns: bool = True) -> Optional[FileOutcome]:
        """The cached outcome for ``key`` with its arrays (``None`` when absent or unreadable)."""
        from safetensors import safe_open

        meta = self.header(key)
        if meta is None:
            return None
        wanted = list(meta["views"]) if views is None else list(views)
        try:
            with safe_open(str(self.path(key)), framework="numpy") as handle:
                arrays = {view: handle.get_tensor(f"view.{view}") for view in wanted}
                cols = {name: handle.get_tensor(f"desc.{name}") for name in DESCRIPTOR_FLOATS + ("velocity", "chroma") + SLICE_COLUMNS} \
                    if columns else {}
        except Exception:  # noqa: BLE001 - safetensors raises its own errors for a broken file
            return None
        n = int(meta["events"])
        if any(a.shape[0] != n for a in list(arrays.values()) + list(cols.values())):
            return None
        return FileOutcome(index=index, name=name or meta.get("name", ""), sha256=meta["sha256"], key=key,
                           duration_s=float(meta["duration_s"]), columns=cols, views=arrays, from_cache=True,
                           settings=meta.get("settings"), events=n)

    def store(self, outcome: FileOutcome) -> None:
        from safetensors.numpy import save

        if not outcome.ok or not outcome.key or not outcome.columns:
            raise ParameterError("only analysed files with a key and their arrays can be cached")
        tensors = {f"view.{view}": np.ascontiguousarray(a, dtype=np.float32) for view, a in outcome.views.items()}
        tensors.update({f"desc.{name}": np.ascontiguousarray(a) for name, a in outcome.columns.items()})
        meta = {"cache_version": FEATURE_CACHE_VERSION, "sha256": outcome.sha256, "name": outcome.name,
                "duration_s": outcome.duration_s, "events": outcome.n_events, "views": sorted(outcome.views),
                "settings": outcome.settings}
        payload = save(tensors, metadata={"musichal": json.dumps(meta, sort_keys=True)})
        final = self.path(outcome.key)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, final)


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

    def known(self, path: str | Path) -> Optional[tuple[int, int, str]]:
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


def _one_line(error: BaseException, path: Path, name: str) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = text.replace(str(path), name)
    return text[len(name) + 2:] if text.startswith(f"{name}: ") else text


def analyze_path(path: str | Path, *, index: int, name: str, config: MusicHalConfig, perception: Any,
                 settings: Mapping[str, Any], cache: Optional[FeatureCache],
                 known: Optional[Sequence[Any]] = None, window_batches: Optional[list] = None) -> FileOutcome:
    """Features of one file, written as a shard to ``cache`` (a summary without arrays is returned then).

    ``known`` = ``(size, mtime_ns, sha256)`` from the driver's :class:`HashIndex`: when size and mtime still
    match, the file is not hashed again. A cached shard is only checked (its header), not read.
    Never raises for bad audio: the outcome carries a one-line ``reason``; ``unreadable`` when the file cannot
    be opened here (missing on this node, no permission). With ``window_batches`` (the wav2vec path's first
    stage, ``perception`` without wav2vec) the windows are collected there in analysis batches and the outcome
    is returned with its arrays and ``pending`` set, unstored: :func:`encode_pending` finishes it.
    """
    from shared.audio import probe_audio_file
    from services.encoder.analysis import analyze_file

    path = Path(path)
    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        st = os.stat(path)
        with open(path, "rb"):
            pass
    except OSError as error:
        return FileOutcome(index=index, name=name, reason=f"unreadable ({_one_line(error, path, name)})", unreadable=True)
    hashed = False
    if known is not None and (int(known[0]), int(known[1])) == (st.st_size, st.st_mtime_ns):
        sha = str(known[2])
    else:
        try:
            sha = file_sha256(path)
        except OSError as error:
            return FileOutcome(index=index, name=name, reason=f"unreadable ({_one_line(error, path, name)})",
                               unreadable=True)
        hashed = True
    key = cache_key(sha, settings)
    common = {"index": index, "name": name, "sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "hashed": hashed, "settings": dict(settings)}
    if cache is not None:
        head = cache.header(key)
        if head is not None:
            return FileOutcome(**common, key=key, duration_s=float(head["duration_s"]), events=int(head["events"]),
                               from_cache=True, seconds=time.perf_counter() - start,
                               cpu_s=time.process_time() - cpu_start)
    try:
        duration_s = probe_audio_file(path).duration_s
        events, analyses = analyze_file(path, config, perception, window_batches=window_batches)
    except MusicHalError as error:
        return FileOutcome(**common, reason=_one_line(error, path, name))
    except Exception as error:  # a decoder's own failure on a corrupt file
        return FileOutcome(**common, reason=f"{type(error).__name__}: {_one_line(error, path, name)}")
    if not events:
        return FileOutcome(**common, duration_s=duration_s, reason="no onsets found")
    views = {view: np.stack([vectors[view] for _, vectors in analyses]).astype(np.float32)
             for view in analyses[0][1]}
    outcome = FileOutcome(**common, key=key, duration_s=duration_s, columns=descriptor_columns([d for d, _ in analyses]),
                          views=views, seconds=time.perf_counter() - start, cpu_s=time.process_time() - cpu_start)
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


def analyze_batch(items: Sequence[Sequence[Any]], *, config: MusicHalConfig, perception: Any,
                  cache_dir: Optional[str], node: str = "") -> list[FileOutcome]:
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
        outcome = analyze_path(path, index=index, name=name, config=config, perception=perception,
                               settings=settings, cache=cache, known=known)
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


def segment_batch(items: Sequence[Sequence[Any]], *, config: MusicHalConfig, perception: Any,
                  settings: Mapping[str, Any], cache_dir: str, node: str = "") -> tuple[list[FileOutcome], list[dict]]:
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
        outcome = analyze_path(item[1], index=item[0], name=item[2], config=config, perception=perception,
                               settings=settings, cache=cache, known=item[3] if len(item) > 3 else None,
                               window_batches=batches)
        outcome.node = node
        outcome.settings_key = digest
        if outcome.pending:
            payloads.append({"index": outcome.index, "columns": outcome.columns,
                             "traditional": outcome.views.get("traditional"), "batches": batches})
            outcome = outcome.without_arrays()
        summaries.append(outcome)
    return summaries, payloads


def encode_pending(summaries: Sequence[FileOutcome], payloads: Sequence[dict], *, perception: Any,
                   settings: Mapping[str, Any], cache_dir: str, sample_rate_hz: int, node: str = "") -> list[FileOutcome]:
    """Second stage of the wav2vec path (an encoder actor): the wav2vec view of each pending file, batch by batch
    exactly as :func:`analyze_path` would, then the shard is written. Returns the final summaries."""
    cache = FeatureCache(cache_dir)
    by_index = {payload["index"]: payload for payload in payloads}
    out = []
    for summary in summaries:
        payload = by_index[summary.index]
        start, cpu_start = time.perf_counter(), time.process_time()
        rows = [np.asarray(row, dtype=np.float32) for batch in payload["batches"]
                for row in perception.wav2vec.extract_batch(list(batch), sample_rate_hz)]
        views = {"wav2vec": np.stack(rows).astype(np.float32)}
        if "traditional" in settings["views"]:
            views["traditional"] = payload["traditional"]
        outcome = dataclasses.replace(summary, views=views, columns=payload["columns"], pending=False, node=node,
                                      seconds=summary.seconds + time.perf_counter() - start,
                                      cpu_s=summary.cpu_s + time.process_time() - cpu_start, settings=dict(settings))
        try:
            cache.store(outcome)
        except OSError as error:
            outcome.error = f"cannot write the features of {summary.name} to {cache.directory}: {error}"
        out.append(outcome.without_arrays())
    return out


# ---------------------------------------------------------------------------------------------- fitting
def _new_model(config: MusicHalConfig, settings: Mapping[str, Any], seed: int) -> Any:
    from services.encoder.perception_model import PerceptionModel

    feature_info = {"views": list(settings["views"]), "primary_view": settings["primary_view"],
                    "hybrid": settings["hybrid"], "wav2vec": settings["wav2vec"], "traditional": settings["traditional"]}
    return PerceptionModel(views=settings["views"], primary_view=settings["primary_view"],
                           vocabulary_size=config.quantizer.vocabulary_size, l2_normalize=config.quantizer.l2_normalize,
                           seed=seed, pca_components=config.features.pca_components, feature_info=feature_info,
                           segmenter=config.segmenter, sample_rate_hz=config.audio.sample_rate_hz)


Mapper = Callable[[Callable[..., Any], list[tuple]], list[Any]]


def serial_map(fn: Callable[..., Any], arguments: list[tuple]) -> list[Any]:
    """The in-process mapper: ``[fn(*args) for args in arguments]`` (Ray's runs them as tasks, same order)."""
    return [fn(*args) for args in arguments]


def sample_rows(total: int, size: int, seed: int) -> np.ndarray:
    """Sorted global event indices of the fitting sample: all when ``total <= size``, else ``size`` drawn without
    replacement with ``seed`` (the same rows for any number of workers or nodes)."""
    if total <= size:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=size, replace=False, shuffle=False)).astype(np.int64)


def read_sample_group(cache_dir: str, entries: Sequence[tuple[str, str, np.ndarray]],
                      views: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows ``rows`` of each ``(key, name, rows)`` shard, per view, concatenated in the given order."""
    cache = FeatureCache(cache_dir, create=False)
    parts: dict[str, list[np.ndarray]] = {view: [] for view in views}
    for key, name, rows in entries:
        loaded = cache.load(key, name=name, views=views, columns=False)
        if loaded is None:
            raise ParameterError(f"the feature shard of {name} is missing or broken in {cache_dir}")
        for view in views:
            parts[view].append(loaded.views[view][rows])
    return {view: np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32) for view, arrays in parts.items()}


def tokenize_group(cache_dir: str, entries: Sequence[tuple[str, str, bool]], model: Any) -> list[dict[str, Any]]:
    """Per ``(key, name, in_oracle)`` shard: token counts per view; for oracle files also the primary view's
    tokens, projected (PCA) frames and descriptor columns."""
    cache = FeatureCache(cache_dir, create=False)
    out = []
    for key, name, in_oracle in entries:
        loaded = cache.load(key, name=name, columns=in_oracle)
        if loaded is None:
            raise ParameterError(f"the feature shard of {name} is missing or broken in {cache_dir}")
        result: dict[str, Any] = {"counts": {}}
        for view in model.views:
            projected = model.project(view, loaded.views[view])
            tokens = model.quantizers[view].transform(projected)
            result["counts"][view] = np.bincount(tokens, minlength=model.quantizers[view].n_centroids).astype(np.int64)
            if in_oracle and view == model.primary_view:
                result.update(tokens=tokens.astype(np.int64), frames=np.ascontiguousarray(projected, dtype=np.float32),
                              columns=loaded.columns)
        out.append(result)
    return out


def _groups(sizes: Sequence[int], *, max_events: int = GROUP_EVENTS, max_files: int = GROUP_FILES) -> list[range]:
    """Consecutive file ranges of at most ``max_events`` events (or ``max_files`` files): units of parallel work."""
    groups, begin, events = [], 0, 0
    for i, n in enumerate(sizes):
        if i > begin and (events + n > max_events or i - begin >= max_files):
            groups.append(range(begin, i))
            begin, events = i, 0
        events += n
    if begin < len(sizes):
        groups.append(range(begin, len(sizes)))
    return groups


def fit_perception(model: Any, usable: Sequence[FileOutcome], *, cache_dir: str, sample_events: int, seed: int,
                   map_groups: Mapper = serial_map) -> tuple[Any, int]:
    """Fit ``model`` (a :class:`PerceptionModel`) on a deterministic sample of the corpus' events.

    The sample (:func:`sample_rows`, ``sample_events`` rows drawn with ``seed``) is read from the shards in
    parallel groups, in corpus order, so only the sample is ever in the driver's memory. Returns
    ``(model, sample size)``.
    """
    sizes = [o.n_events for o in usable]
    total = int(sum(sizes))
    if total < 1:
        raise ParameterError("cannot fit perception on zero events")
    rows = sample_rows(total, sample_events, seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    bounds = np.searchsorted(rows, offsets)
    arguments = []
    for group in _groups(sizes):
        entries = [(usable[i].key, usable[i].name, rows[bounds[i]:bounds[i + 1]] - offsets[i]) for i in group
                   if bounds[i + 1] > bounds[i]]
        if entries:
            arguments.append((cache_dir, entries, tuple(model.views)))
    parts = map_groups(read_sample_group, arguments)
    features = {view: np.concatenate([part[view] for part in parts]) for view in model.views}
    return model.fit_arrays(features), int(rows.size)


def oracle_files(sizes: Sequence[int], max_states: int) -> np.ndarray:
    """Which files the oracle holds (bool per file): all up to ``max_states`` events, else whole files spread
    evenly over the corpus order (file ``i`` when its share of ``max_states`` reaches a new integer count)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if total <= max_states:
        return np.ones(sizes.size, dtype=bool)
    keep = np.zeros(sizes.size, dtype=bool)
    cum = np.cumsum(sizes)
    taken = 0
    for i in range(sizes.size):  # per file, not per event
        if taken + int(sizes[i]) <= (int(cum[i]) * max_states) // total:
            keep[i] = True
            taken += int(sizes[i])
    if not keep.any():
        raise ParameterError(f"trainer.oracle_max_states ({max_states}) is smaller than every file's events")
    return keep


# ---------------------------------------------------------------------------------------------- oracle
def build_model_parts(model: Any, usable: Sequence[FileOutcome], tokenized: Sequence[dict[str, Any]], *,
                      config: MusicHalConfig, threshold: str | float = "auto"
                      ) -> tuple[tuple[dict[str, Any], dict[str, np.ndarray]], dict[str, Any]]:
    """Threshold and the oracle memory from the tokenised files (states in corpus order).

    ``tokenized[i]`` is :func:`tokenize_group`'s result for ``usable[i]``. Returns ``(oracle_parts, facts)``: the
    :meth:`OracleMemory.to_model_parts` pair and deterministic facts (threshold, its source, total IR, vocabulary
    usage per view, states). The Audio Oracle and the token factor oracle are built by their numba kernels and
    the per-state metadata is appended as columns: no Python work per state.
    """
    from services.oracle.memory.audio_oracle import AudioOracle
    from services.oracle.memory.factor_oracle import FactorOracle
    from services.oracle.memory.information_rate import select_threshold, total_information_rate
    from services.oracle.memory.store import OracleMemory

    counts = {v: np.zeros(model.quantizers[v].n_centroids, dtype=np.int64) for v in model.views}
    for result in tokenized:
        for v in model.views:
            counts[v] += result["counts"][v]
    members = [(o, t) for o, t in zip(usable, tokenized) if "frames" in t]
    starts = np.concatenate([[0], np.cumsum([o.n_events for o in usable])]).astype(np.int64)
    first_ids = {o.index: int(starts[k]) for k, o in enumerate(usable)}
    n_states = sum(o.n_events for o, _ in members)
    dim = members[0][1]["frames"].shape[1]
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ParameterError(f"threshold must be 'auto' or a number >= 0, got {threshold!r}")
        prefix, need = [], IR_MAX_EVENTS
        for _, t in members:
            if need <= 0:
                break
            prefix.append(t["frames"][:need].astype(np.float64))
            need -= prefix[-1].shape[0]
        frames = np.concatenate(prefix)
        value, curve = select_threshold(frames) if frames.shape[0] >= 2 else (0.0, np.zeros((0, 2)))
        source = "ir"
    else:
        value = float(threshold)
        if not np.isfinite(value) or value < 0:
            raise ParameterError(f"threshold must be a finite number >= 0, got {threshold!r}")
        curve, source = np.zeros((0, 2)), "given"
    audio = AudioOracle(value, dim, capacity=n_states + 1)
    token_oracle = FactorOracle(capacity=n_states + 1)
    for outcome, t in members:  # per file; the kernels and column appends do the per-state work
        first = first_ids[outcome.index]
        audio.extend(t["frames"].astype(np.float64), tokens=t["tokens"], columns=t["columns"],
                     event_ids=np.arange(first, first + outcome.n_events, dtype=np.int64), source=outcome.name)
        token_oracle.extend(t["tokens"])
    stage = OracleMemory.from_memory(config, audio, token_oracle, threshold_source="trained")
    usage = {}
    for v, c in counts.items():
        counts_v = np.zeros(model.vocabulary_size, dtype=np.int64)
        counts_v[:c.size] = c
        total_v = int(counts_v.sum())
        p = counts_v[counts_v > 0] / max(1, total_v)
        entropy = float(-(p * np.log2(p)).sum()) if total_v else 0.0
        usage[v] = {"counts": counts_v.tolist(), "used": int((counts_v > 0).sum()),
                    "used_fraction": float((counts_v > 0).sum() / model.vocabulary_size), "entropy_bits": entropy,
                    "perplexity": float(2.0 ** entropy)}
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


def _serial_analyze(items: list[tuple[Any, ...]], *, config: MusicHalConfig, cache_dir: Optional[str],
                    progress: Callable[[FileOutcome], None]) -> list[FileOutcome]:
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
        descriptors = [EventDescriptors(onset_s=0.1 * i, duration_s=0.1, rms=0.1, velocity=64, f0_hz=220.0,
                                        f0_confidence=0.5, chroma_peaks=(9,)) for i in range(16)]
        oracle.extend(frames, tokens=tokens, columns=descriptor_columns(descriptors), event_ids=np.arange(16))
        total_information_rate(oracle.lrs)
        FactorOracle(capacity=17).extend(tokens)
    except Exception:  # noqa: BLE001 - only a warm-up
        pass


def _node_label(node: str) -> str:
    return node[:12] if node else "local"


def train(paths: Sequence[str | Path], *, config: MusicHalConfig, output: str | Path, threshold: str | float = "auto",
          cache_dir: Optional[str | Path] = None, analyze_many: Optional[Callable[..., list[FileOutcome]]] = None,
          progress: Optional[Callable[[FileOutcome], None]] = None, map_groups: Optional[Mapper] = None,
          skip_unreadable: Optional[bool] = None, extra_stats: Optional[Mapping[str, Any]] = None) -> TrainingResult:
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
        raise ParameterError(f"{first.name}: cannot be read on node {_node_label(first.node)}: {first.reason}{more}; "
                             "every node must see the corpus at the same paths, or give --skip-unreadable")
    usable = [o for o in outcomes if o.ok]
    if not usable:
        reasons = "; ".join(f"{o.name}: {o.reason}" for o in outcomes[:3])
        raise ParameterError(f"nothing usable to train on ({len(outcomes)} file(s) skipped: {reasons})")
    settings = next((o.settings for o in outcomes if o.settings is not None and o.settings_key == usable[0].settings_key),
                    None)
    if settings is None or any(o.settings_key != usable[0].settings_key for o in usable):
        raise ParameterError("workers computed features with different settings (mixed checkpoints or configs?)")
    invisible = [o for o in usable if o.key not in cache]
    if invisible:
        o = invisible[0]
        raise ParameterError(f"the features of {o.name} were written on node {_node_label(o.node)} but {cache_dir} "
                             "does not hold them here: on a cluster --cache-dir must be a folder every node shares")

    total_events = sum(o.n_events for o in usable)
    t1 = time.perf_counter()
    model, sample_size = fit_perception(_new_model(config, settings, config.quantizer.seed), usable,
                                        cache_dir=str(cache_dir), sample_events=config.trainer.fit_sample_events,
                                        seed=config.quantizer.seed, map_groups=map_groups)
    timings["fit_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    keep = oracle_files([o.n_events for o in usable], config.trainer.oracle_max_states)
    groups = _groups([o.n_events for o in usable])
    tokenized = [r for part in map_groups(tokenize_group, [(str(cache_dir), [(usable[i].key, usable[i].name, bool(keep[i]))
                                                                             for i in group], model) for group in groups])
                 for r in part]
    timings["tokenize_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    oracle_parts, facts = build_model_parts(model, usable, tokenized, config=config, threshold=threshold)
    del tokenized
    timings["oracle_s"] = time.perf_counter() - t3
    audio_s = sum(o.duration_s for o in usable)
    training = {
        "trainer": "musichal-train",
        "seed": config.quantizer.seed,
        "files": [{"name": o.name, "sha256": o.sha256, "duration_s": o.duration_s, "events": o.n_events} for o in usable],
        "skipped": [{"name": o.name, "reason": o.reason} for o in outcomes if not o.ok],
        "events": total_events,
        "audio_seconds": audio_s,
        "feature_settings": settings,
        "fit_sample_events": sample_size,
        "oracle_files": [o.name for o, k in zip(usable, keep) if k] if not keep.all() else "all",
        **facts,
    }
    config_record = {name: dataclasses.asdict(getattr(config, name)) for name in ("audio", "segmenter", "features",
                                                                                    "wav2vec", "quantizer", "oracle")}
    config_record["wav2vec"].pop("use_gpu", None)  # runtime choice, not part of the features
    output.parent.mkdir(parents=True, exist_ok=True)
    t4 = time.perf_counter()
    save_musichal_model(output, oracle_parts=oracle_parts, perception=model, config=config_record, training=training)
    timings["write_s"] = time.perf_counter() - t4
    timings["total_s"] = time.perf_counter() - t0
    nodes: dict[str, int] = {}
    for o in outcomes:
        nodes[o.node] = nodes.get(o.node, 0) + 1
    stats = {"timings": timings, "wall_s": timings["total_s"],
             "audio_hours_per_hour": (audio_s / timings["total_s"]) if timings["total_s"] > 0 else 0.0,
             "cache": {"directory": str(cache_dir), "hits": sum(o.from_cache for o in outcomes),
                       "misses": sum((not o.from_cache) and o.ok for o in outcomes),
                       "hashed": sum(o.hashed for o in outcomes)},
             "unreadable_skipped": [{"name": o.name, "node": o.node, "reason": o.reason} for o in unreadable],
             "oracle_states": facts["states"],
             "files": [{"name": o.name, "node": o.node, "seconds": o.seconds, "from_cache": o.from_cache,
                        "hashed": o.hashed, "events": o.n_events if o.ok else 0, "skipped": o.reason} for o in outcomes],
             "files_per_node": nodes, **dict(extra_stats or {})}
    atomic_write_bytes(stats_path_for(output), json.dumps(stats, indent=2, sort_keys=True).encode())
    return TrainingResult(output=output, outcomes=outcomes, training=training, stats=stats)
