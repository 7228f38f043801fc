"""How a model listens, as a small value: :class:`PerceptionSpec`, :func:`resolve_checkpoint`,
:func:`check_live_request`.

A model plays the way it was trained. The model file records its perception completely — the views, whether it
is hybrid, the wav2vec checkpoint's identity (name or directory, layer, pooling, dimension and a sha256 of the
checkpoint's files), the fitted PCA and quantizers, and the dimension of the oracle's memory — and the live
encoder is rebuilt from that record, not from command-line flags.

* :class:`PerceptionSpec` — a frozen dataclass: the JSON-able record (``to_dict``/``from_dict``) plus the fitted
  perception arrays. It travels **by value** (Ray, or any serialiser) to whichever node builds the encoder, which
  calls :meth:`PerceptionSpec.perception_model` and :func:`resolve_checkpoint` there. Nothing here imports Ray.
* :func:`resolve_checkpoint` — runs on the node that builds the encoder: finds the checkpoint (the recorded
  directory or hub name, or the one ``--wav2vec-model`` points to), hashes it and compares with the record.
  A missing or different checkpoint is one :class:`~shared.errors.DeviceError` line naming where it looked and
  how to point elsewhere. A different checkpoint is used only when asked for explicitly
  (``allow_other_checkpoint``), and then its hidden size and layer count must fit the record.
* :func:`check_live_request` — live flags that contradict the record (``--wav2vec`` on a traditional model …)
  are one :class:`~shared.errors.ParameterError` line.
* :func:`checkpoint_sha256` — the content hash: sha256 over the sorted names and sha256 of the checkpoint
  folder's ``.safetensors``, ``.bin`` and ``.json`` files (the trainer's feature-cache hash is the same).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import DeviceError, ModelFormatError, ParameterError

__all__ = [
    "SPEC_FORMAT",
    "POOLING",
    "Wav2VecSpec",
    "PerceptionSpec",
    "checkpoint_sha256",
    "locate_checkpoint",
    "resolve_checkpoint",
    "check_live_request",
]

SPEC_FORMAT = 1
#: The only pooling :class:`~services.encoder.wav2vec.Wav2VecMusicEncoder` does (mean over time of one layer).
POOLING = "mean"
DEFAULT_WAV2VEC = "facebook/wav2vec2-base"


def _file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_sha256(root: str | Path) -> str | None:
    """sha256 over a checkpoint folder's weight and config files (None when the folder has none)."""
    root = Path(root)
    if not root.is_dir():
        return None
    names = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    if not names:
        return None
    digest = hashlib.sha256()
    for path in names:
        digest.update(path.name.encode())
        digest.update(_file_sha256(path).encode())
    return digest.hexdigest()


def locate_checkpoint(name: str) -> Path | None:
    """The folder holding checkpoint ``name`` on this node: the directory itself, or the Hugging Face cache
    snapshot of a hub name (never the network). None when it is not here."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_absolute() or name.startswith((".", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        return None


@dataclass(frozen=True)
class Wav2VecSpec:
    """The identity of the wav2vec checkpoint a model was trained with."""

    model: str  # hub name, or the absolute directory it was loaded from at training
    layer: int = -1
    pooling: str = POOLING
    dimension: int = 0  # the checkpoint's hidden size (before any PCA)
    sample_rate_hz: int = 16_000
    do_normalize: bool = True
    checkpoint_sha256: str | None = None  # None: an old model trained from a checkpoint that was not on disk

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Wav2VecSpec:
        try:
            return cls(
                model=str(values["model"]),
                layer=int(values["layer"]),
                pooling=str(values.get("pooling", POOLING)),
                dimension=int(values["dimension"]),
                sample_rate_hz=int(values.get("sample_rate_hz", 16_000)),
                do_normalize=bool(values.get("do_normalize", True)),
                checkpoint_sha256=values.get("checkpoint_sha256") or None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFormatError(
                f"the wav2vec record is incomplete or malformed ({type(error).__name__}: {error})"
            ) from None


@dataclass(frozen=True, eq=False)
class PerceptionSpec:
    """Everything the live encoder needs to hear as the model was trained to (see the module docstring).

    ``checkpoint`` and ``allow_other_checkpoint`` are the live request (where to look for the wav2vec weights,
    and whether different weights may be used); they are not part of the model's record.
    """

    views: tuple[str, ...]
    primary_view: str
    hybrid: bool
    vocabulary_size: int
    memory_dimension: int  # length of the primary view's (PCA'd) vectors = the oracle memory's feature dimension
    wav2vec: Wav2VecSpec | None = None
    perception_meta: Mapping[str, Any] = field(default_factory=dict, repr=False)  # PerceptionModel.to_model_parts()[0]
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)  # its ``perception.*`` arrays
    source: str = ""  # the model file it came from (messages only)
    checkpoint: str | None = None
    allow_other_checkpoint: bool = False

    # ------------------------------------------------------------------ building
    @classmethod
    def from_perception_model(cls, model: Any, *, source: str = "") -> PerceptionSpec:
        """The spec of a fitted :class:`~services.encoder.perception_model.PerceptionModel`."""
        meta, arrays = model.to_model_parts()
        wav2vec = None
        if "wav2vec" in model.views:
            info = dict((model.feature_info or {}).get("wav2vec") or {})
            if not info:
                raise ModelFormatError("the model has a wav2vec view but no record of its checkpoint")
            info.setdefault("pooling", POOLING)
            wav2vec = Wav2VecSpec.from_dict(info)
        return cls(
            views=tuple(model.views),
            primary_view=model.primary_view,
            hybrid=bool(model.hybrid),
            vocabulary_size=int(model.vocabulary_size),
            memory_dimension=int(model.quantizers[model.primary_view].dimension),
            wav2vec=wav2vec,
            perception_meta=meta,
            arrays=dict(arrays),
            source=str(source),
        )

    def perception_model(self) -> Any:
        """The fitted :class:`~services.encoder.perception_model.PerceptionModel` (validated; ModelFormatError)."""
        from services.encoder.perception_model import PerceptionModel

        return PerceptionModel.from_model_parts(self.perception_meta, self.arrays)

    def with_request(self, *, checkpoint: str | None = None, allow_other_checkpoint: bool = False) -> PerceptionSpec:
        """The same spec with the live request attached (where to look for the weights; may they differ)."""
        return dataclasses.replace(self, checkpoint=checkpoint, allow_other_checkpoint=bool(allow_other_checkpoint))

    # ------------------------------------------------------------------ record (JSON in the model file)
    def record(self) -> dict[str, Any]:
        """The JSON-able record stored in the model file (``meta["perception_spec"]``)."""
        return {
            "spec_format": SPEC_FORMAT,
            "views": list(self.views),
            "primary_view": self.primary_view,
            "hybrid": self.hybrid,
            "vocabulary_size": self.vocabulary_size,
            "memory_dimension": self.memory_dimension,
            "wav2vec": self.wav2vec.to_dict() if self.wav2vec is not None else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the record, the perception meta and the live request (the arrays travel beside it)."""
        return {
            **self.record(),
            "perception_meta": dict(self.perception_meta),
            "source": self.source,
            "checkpoint": self.checkpoint,
            "allow_other_checkpoint": self.allow_other_checkpoint,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> PerceptionSpec:
        """Rebuild from :meth:`to_dict` (or a model file's record plus ``perception_meta``); ModelFormatError."""
        if not isinstance(values, Mapping):
            raise ModelFormatError("the perception record must be an object")
        if values.get("spec_format") != SPEC_FORMAT:
            raise ModelFormatError(
                f"perception record spec_format {values.get('spec_format')!r} is not supported "
                f"(this MusicHal reads {SPEC_FORMAT})"
            )
        try:
            views = tuple(str(v) for v in values["views"])
            spec = cls(
                views=views,
                primary_view=str(values["primary_view"]),
                hybrid=bool(values["hybrid"]),
                vocabulary_size=int(values["vocabulary_size"]),
                memory_dimension=int(values["memory_dimension"]),
                wav2vec=Wav2VecSpec.from_dict(values["wav2vec"]) if values.get("wav2vec") else None,
                perception_meta=dict(values.get("perception_meta") or {}),
                arrays=dict(arrays or {}),
                source=str(values.get("source", "")),
                checkpoint=values.get("checkpoint"),
                allow_other_checkpoint=bool(values.get("allow_other_checkpoint", False)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFormatError(f"the perception record is malformed ({type(error).__name__}: {error})") from None
        spec.validate()
        return spec

    def validate(self) -> None:
        """The record is self-consistent (ModelFormatError otherwise)."""
        if not self.views or self.primary_view not in self.views:
            raise ModelFormatError(
                f"perception record: primary view {self.primary_view!r} is not among {list(self.views)}"
            )
        if ("wav2vec" in self.views) != (self.wav2vec is not None):
            raise ModelFormatError("perception record: the wav2vec view and the checkpoint record disagree")
        if self.memory_dimension < 1:
            raise ModelFormatError(f"perception record: memory dimension {self.memory_dimension} is not positive")
        if self.wav2vec is not None and self.wav2vec.pooling != POOLING:
            raise ModelFormatError(
                f"the model pools wav2vec by {self.wav2vec.pooling!r}; this MusicHal pools by {POOLING!r}"
            )

    def matches(self, other: PerceptionSpec) -> bool:
        """Same record (the live request aside)."""
        return self.record() == other.record()

    # ------------------------------------------------------------------ description
    def describe(self) -> list[str]:
        """Human lines: how a stack playing this model listens."""
        lines = [
            f"listens with: {' + '.join(self.views)} (primary {self.primary_view}"
            + (", hybrid" if self.hybrid else "")
            + ")",
            f"memory features: {self.memory_dimension}-D; {self.vocabulary_size} symbols per view",
        ]
        if "symbolic" in self.views:
            lines.append(
                "symbolic view: the notes of each event (pitch-class set, bass and top pitch, interval classes, "
                "span, density, velocity); MIDI input gives them directly, audio input through each slice's "
                "transcribed notes ([features] slice_notes), else its f0, else its chroma classes"
            )
        if self.wav2vec is not None:
            w = self.wav2vec
            lines.append(
                f"wav2vec checkpoint: {w.model} (layer {w.layer}, {w.pooling} pooling, {w.dimension}-D, "
                f"sha256 {w.checkpoint_sha256[:12] + '…' if w.checkpoint_sha256 else 'not recorded'})"
            )
        return lines


# ---------------------------------------------------------------------------------------------- live side
def _checkpoint_shape(root: Path) -> tuple[int | None, int | None]:
    """``(hidden_size, num_hidden_layers)`` from a checkpoint folder's config.json (no torch needed)."""
    try:
        config = json.loads((root / "config.json").read_text())
        return int(config["hidden_size"]), int(config["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def resolve_checkpoint(spec: PerceptionSpec) -> str | None:
    """Find and verify the wav2vec checkpoint of ``spec`` on this node; returns what to load (None: no wav2vec).

    Looks at ``spec.checkpoint`` when the live request names one, else at the recorded name or directory. The
    folder's :func:`checkpoint_sha256` must equal the recorded one, unless ``spec.allow_other_checkpoint``:
    then a different checkpoint is used when its hidden size equals the recorded dimension and it has the
    recorded layer.

    Raises
    ------
    DeviceError
        One line: not found (with the place it looked and how to point elsewhere) or different weights.
    """
    w = spec.wav2vec
    if w is None:
        if spec.checkpoint:
            raise ParameterError(
                f"--wav2vec-model {spec.checkpoint} was given but the model listens without wav2vec "
                "(it was trained on the traditional view)"
            )
        return None
    wanted = spec.checkpoint or w.model
    root = locate_checkpoint(wanted)
    model_name = f"the model {spec.source}" if spec.source else "the model"
    if root is None:
        where = (
            f"directory {Path(wanted).expanduser()}"
            if (Path(wanted).is_absolute() or wanted.startswith((".", "~")))
            else f"the Hugging Face cache for {wanted!r}"
        )
        raise DeviceError(
            f"the wav2vec checkpoint of {model_name} was not found (looked in {where}): point to a copy "
            "with --wav2vec-model DIR"
        )
    if not (root / "config.json").is_file():
        raise DeviceError(
            f"wav2vec checkpoint {root} has no config.json: point to a folder saved with save_pretrained "
            "with --wav2vec-model DIR"
        )
    digest = checkpoint_sha256(root)
    if w.checkpoint_sha256 is not None and digest != w.checkpoint_sha256:
        if not spec.allow_other_checkpoint:
            raise DeviceError(
                f"the wav2vec checkpoint in {root} is not the one {model_name} was trained with "
                f"(sha256 {str(digest)[:12]}…, trained {w.checkpoint_sha256[:12]}…): point to the trained one "
                "with --wav2vec-model DIR, or add --other-checkpoint to use this one anyway"
            )
        hidden, layers = _checkpoint_shape(root)
        if hidden != w.dimension:
            raise DeviceError(
                f"the other wav2vec checkpoint in {root} is {hidden}-D; {model_name} needs {w.dimension}-D"
            )
        if layers is None or not -(layers + 1) <= w.layer <= layers:
            raise DeviceError(
                f"the other wav2vec checkpoint in {root} has {layers} layers; {model_name} uses layer {w.layer}"
            )
    elif w.checkpoint_sha256 is None:  # an old model: identity by name, dimension checked
        hidden, _ = _checkpoint_shape(root)
        if hidden != w.dimension:
            raise DeviceError(f"the wav2vec checkpoint in {root} is {hidden}-D; {model_name} needs {w.dimension}-D")
    return str(root)


def check_live_request(
    spec: PerceptionSpec,
    *,
    wav2vec: bool = False,
    hybrid: bool = False,
    checkpoint: str | None = None,
    allow_other_checkpoint: bool = False,
    layer: int | None = None,
) -> None:
    """Raise ParameterError (one line) when live perception flags contradict the model's record.

    Absent flags mean "as the model was trained"; given flags must agree with the record. ``checkpoint`` is
    checked by :func:`resolve_checkpoint` (same weights, or ``allow_other_checkpoint``).
    """
    name = f"the model {spec.source}" if spec.source else "the model"
    trained = "+".join(spec.views)
    if wav2vec and spec.wav2vec is None:
        raise ParameterError(
            f"--wav2vec contradicts {name}: it was trained on the {trained} view; play it without "
            "--wav2vec, or train a wav2vec model (musichal-train --wav2vec)"
        )
    if checkpoint and spec.wav2vec is None:
        raise ParameterError(
            f"--wav2vec-model contradicts {name}: it was trained on the {trained} view and uses no wav2vec checkpoint"
        )
    if hybrid and spec.wav2vec is not None and not spec.hybrid:
        raise ParameterError(
            f"--hybrid-perception contradicts {name}: it was trained on the wav2vec view alone; play it "
            "without --hybrid-perception, or retrain with --hybrid-perception"
        )
    if allow_other_checkpoint and not checkpoint:
        raise ParameterError("--other-checkpoint needs --wav2vec-model DIR (the checkpoint to use instead)")
    if layer is not None and spec.wav2vec is not None and int(layer) != spec.wav2vec.layer:
        raise ParameterError(f"wav2vec layer {layer} contradicts {name}: it was trained on layer {spec.wav2vec.layer}")
