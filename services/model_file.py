"""The whole MusicHal model file: perception (features, PCA, quantizers) + oracle, in one container.

``model.json`` meta (schema 4)::

    {"musichal_model": 4, "perception": {...PerceptionModel meta...} | null,
     "perception_spec": {...PerceptionSpec.record(): views, hybrid, wav2vec checkpoint identity, memory dimension...} |
     null,
     "oracle": {...OracleMemory meta...}, "config": {...segmenter/features/quantizer sections...},
     "training": {...deterministic facts: files, events, vocabulary usage...}}

Arrays: ``perception.*`` and ``oracle.*`` in the sibling ``.safetensors``. Timings go to ``model.stats.json``.

Schema 1 files (before the perception record) still load: the record is inferred from the perception meta
(views, checkpoint name, layer, dimension and — when the trainer could hash it — the checkpoint's sha256).
Schema 3 adds what each state's slice holds (``oracle.audio.state.note_*`` CSR note columns, ``pressure``,
``f0_cents``, ``timbre``; see :mod:`services.oracle.memory.states`); schema 1 and 2 files load with no slice notes.
Schema 4 adds the symbolic view (``views`` may be ``["symbolic"]``: features of each event's notes, from MIDI files or
transcribed audio; the record's ``features.symbolic`` says which); older files hold audio views only and load as before.
A schema-4 file is written for every model; one with audio views only reads the same as schema 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.encoder.perception_model import PerceptionModel
from services.encoder.spec import POOLING, PerceptionSpec, checkpoint_sha256, locate_checkpoint
from shared.errors import ModelFormatError
from shared.model_io import load_model, save_model

__all__ = ["MusicHalModel", "load_musichal_model", "save_musichal_model", "describe_model", "MODEL_SCHEMA"]

MODEL_SCHEMA = 4  # 3: per-state slice notes and expression; 4: the symbolic view (services.encoder.symbolic)
READABLE_SCHEMAS = (1, 2, 3, 4)


@dataclass
class MusicHalModel:
    """A loaded model: the raw parts each stage rebuilds itself from."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    path: Path | None = None
    perception: Any = field(default=None)  # PerceptionModel or None (a live-learned checkpoint may have none)
    spec: Any = field(default=None)  # services.encoder.spec.PerceptionSpec (None with perception None)

    @property
    def oracle_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"oracle": self.meta["oracle"]}, {k: v for k, v in self.arrays.items() if k.startswith("oracle.")}


def _recorded_wav2vec(perception: Any) -> None:
    """Make the wav2vec record complete before it is written: absolute directory, pooling, content hash."""
    info = perception.feature_info.get("wav2vec") if isinstance(perception.feature_info, dict) else None
    if "wav2vec" not in perception.views or not isinstance(info, dict):
        return
    info = dict(info)
    name = str(info.get("model", ""))
    if Path(name).expanduser().is_dir():
        info["model"] = str(Path(name).expanduser().resolve())
    info["pooling"] = POOLING
    root = locate_checkpoint(name)
    digest = checkpoint_sha256(root) if root is not None else None
    info["checkpoint_sha256"] = digest or info.get("checkpoint_sha256")
    perception.feature_info = {**perception.feature_info, "wav2vec": info}


def save_musichal_model(
    path: str | Path,
    *,
    oracle_parts: tuple[dict[str, Any], dict[str, np.ndarray]],
    perception: Any = None,
    config: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write perception (with its complete record) + oracle atomically (deterministic bytes for the same content)."""
    oracle_meta, arrays = oracle_parts
    arrays = dict(arrays)
    meta: dict[str, Any] = {
        "musichal_model": MODEL_SCHEMA,
        "oracle": oracle_meta["oracle"],
        "perception": None,
        "perception_spec": None,
        "config": config or {},
        "training": training or {},
    }
    if perception is not None:
        _recorded_wav2vec(perception)
        spec = PerceptionSpec.from_perception_model(perception)
        _check_memory(spec, oracle_meta["oracle"], path)
        meta["perception"] = dict(spec.perception_meta)
        meta["perception_spec"] = spec.record()
        arrays.update(spec.arrays)
    save_model(path, meta, arrays)


def _check_memory(spec: Any, oracle: Any, path: Any) -> None:
    audio = oracle.get("audio") if isinstance(oracle, dict) else None
    if isinstance(audio, dict) and audio.get("dim") is not None and int(audio["dim"]) != spec.memory_dimension:
        raise ModelFormatError(
            f"{path}: the oracle memory is {audio['dim']}-D but the perception gives {spec.memory_dimension}-D vectors"
        )


def load_musichal_model(path: str | Path) -> MusicHalModel:
    """Load and validate; raises ModelFormatError with one line."""
    meta, arrays = load_model(path)
    schema = meta.get("musichal_model")
    if schema not in READABLE_SCHEMAS:
        raise ModelFormatError(f"{path}: not a MusicHal model of schema {MODEL_SCHEMA} (musichal_model={schema!r})")
    if not isinstance(meta.get("oracle"), dict):
        raise ModelFormatError(f"{path}: the oracle section is missing")
    perception = spec = None
    if meta.get("perception") is not None:
        try:
            perception = PerceptionModel.from_model_parts(meta["perception"], arrays)
            inferred = PerceptionSpec.from_perception_model(perception, source=str(path))
            if schema >= 2:
                spec = PerceptionSpec.from_dict(
                    {**(meta.get("perception_spec") or {}), "source": str(path), "perception_meta": meta["perception"]},
                    {k: v for k, v in arrays.items() if k.startswith("perception.")},
                )
                if not spec.matches(inferred):
                    raise ModelFormatError("the perception record does not match the fitted perception")
            else:  # schema 1: migrate (the record is inferred)
                spec = inferred
            _check_memory(spec, meta["oracle"], path)
        except ModelFormatError as error:
            text = str(error)
            raise ModelFormatError(text if text.startswith(f"{path}:") else f"{path}: {text}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFormatError(
                f"{path}: perception section is malformed ({type(error).__name__}: {error})"
            ) from None
    return MusicHalModel(meta=meta, arrays=arrays, path=Path(path), perception=perception, spec=spec)


def describe_model(model: MusicHalModel) -> str:
    """What the model contains and how a stack playing it will listen (``musichal --model m.json --describe``)."""
    meta = model.meta
    training = meta.get("training") or {}
    oracle = meta.get("oracle") or {}
    audio = oracle.get("audio") or {}
    lines = [f"model: {model.path} (schema {meta.get('musichal_model')})"]
    if model.spec is not None:
        lines += model.spec.describe()
    else:
        lines.append("listens with: no fitted perception (tokens are learned live)")
    states = audio.get("n_states", (oracle.get("tokens") or {}).get("n_states"))
    threshold = training.get("threshold", audio.get("threshold"))
    offsets = next((a for k, a in model.arrays.items() if k.endswith("state.note_offsets")), None)
    if offsets is not None and len(offsets):
        lines.append(f"slice notes: {int(offsets[-1])} notes (transcribed, or from MIDI) in the memory's slices")
    lines.append(
        f"oracle: {max(0, int(states) - 1) if states is not None else '?'} states, playing "
        f"{oracle.get('playing', '?')}, "
        f"threshold {f'{float(threshold):.4g}' if threshold is not None else '?'} "
        f"({training.get('threshold_source', oracle.get('threshold_source', '?'))})"
    )
    for view, usage in sorted((training.get("vocabulary_usage") or {}).items()):
        lines.append(
            f"vocabulary {view}: {usage.get('used', '?')} of {model.spec.vocabulary_size if model.spec else '?'} "
            f"symbols used, entropy {float(usage.get('entropy_bits', 0.0)):.2f} bits"
        )
    files = training.get("files") or []
    if files:
        lines.append(
            f"trained on {len(files)} file(s), {training.get('events', '?')} events, "
            f"{float(training.get('audio_seconds', 0.0)):.1f} s of music:"
        )
        lines += [
            f"  {f.get('name')} ({float(f.get('duration_s', 0.0)):.1f} s, {f.get('events')} events)" for f in files
        ]
    for skipped in training.get("skipped") or []:
        lines.append(f"  skipped {skipped.get('name')}: {skipped.get('reason')}")
    if model.spec is not None:
        play = "musichal --model " + str(model.path)
        lines.append(f"play it with: {play}" + ("   (add --gpu to run wav2vec on a GPU)" if model.spec.wav2vec else ""))
    return "\n".join(lines)
