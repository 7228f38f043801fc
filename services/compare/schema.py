"""The documented schema of ``musichal-compare --output`` (``schema_version`` 1) and a small validator.

:data:`RESULTS_SCHEMA` is a JSON-Schema-like dict (keywords ``type``, ``properties``, ``required``, ``items``,
``enum``, ``minimum``, ``maximum``); :func:`validate` checks a results dict against it (or any such schema) and
raises :class:`~shared.errors.ParameterError` naming the first offending path. docs/compare.md describes
every field.

>>> validate({"a": 1}, {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}})
>>> validate({"a": "x"}, {"type": "object", "properties": {"a": {"type": "integer"}}})
Traceback (most recent call last):
...
shared.errors.ParameterError: $.a: expected integer, got str
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import ParameterError

__all__ = ["RESULTS_SCHEMA", "validate"]

_NUMBER = {"type": "number"}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_NON_NEGATIVE = {"type": "number", "minimum": 0}
_CHOICES = ["traditional", "wav2vec", "hybrid", "either"]

_TIMING = {
    "type": "object",
    "required": ["windows", "mean_ms", "p50_ms", "p95_ms", "max_ms", "total_s", "real_time_factor", "per_window_ms"],
    "properties": {
        "windows": {"type": "integer", "minimum": 1},
        "mean_ms": _NON_NEGATIVE,
        "p50_ms": _NON_NEGATIVE,
        "p95_ms": _NON_NEGATIVE,
        "max_ms": _NON_NEGATIVE,
        "total_s": _NON_NEGATIVE,
        "real_time_factor": _NON_NEGATIVE,
        "per_window_ms": {"type": "array", "items": _NON_NEGATIVE},
    },
}

_VOCABULARY = {
    "type": "object",
    "required": [
        "vocabulary_size",
        "fitted_symbols",
        "counts",
        "events",
        "used",
        "used_fraction",
        "entropy_bits",
        "max_entropy_bits",
        "normalized_entropy",
        "perplexity",
        "collapse",
    ],
    "properties": {
        "vocabulary_size": {"type": "integer", "minimum": 2},
        "fitted_symbols": {"type": "integer", "minimum": 1},
        "counts": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "events": {"type": "integer", "minimum": 0},
        "used": {"type": "integer", "minimum": 0},
        "used_fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "entropy_bits": _NON_NEGATIVE,
        "max_entropy_bits": _NON_NEGATIVE,
        "normalized_entropy": {"type": "number", "minimum": 0, "maximum": 1.000001},
        "perplexity": _NON_NEGATIVE,
        "collapse": {"type": "boolean"},
    },
}

_FEATURES = {
    "type": "object",
    "required": [
        "dimension",
        "events",
        "variance_mean",
        "variance_max",
        "variance_min",
        "total_variance",
        "dead_dimensions",
        "sparsity",
        "variance_per_dimension",
    ],
    "properties": {
        "dimension": {"type": "integer", "minimum": 1},
        "events": {"type": "integer", "minimum": 1},
        "variance_mean": _NON_NEGATIVE,
        "variance_max": _NON_NEGATIVE,
        "variance_min": _NON_NEGATIVE,
        "total_variance": _NON_NEGATIVE,
        "dead_dimensions": {"type": "integer", "minimum": 0},
        "sparsity": {"type": "number", "minimum": 0, "maximum": 1},
        "variance_per_dimension": {"type": "array", "items": _NON_NEGATIVE},
    },
}

_POINT = {"type": "array", "items": _NUMBER}


def _pipeline(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [
            "dimension",
            "device",
            "model",
            "load_seconds",
            "warmup_seconds",
            "timing",
            "batch",
            "memory",
            "vocabulary",
            "tokens",
            "features",
            "projection_2d",
            "explained_variance_ratio",
        ],
        "properties": {
            "dimension": {"type": "integer", "minimum": 1},
            "device": {"type": "string", "enum": ["cpu", "cuda", "mps"]},
            "model": {"type": "string"},
            "layer": {"type": "integer"},
            "load_seconds": _NON_NEGATIVE,
            "warmup_seconds": _NON_NEGATIVE,
            "timing": _TIMING,
            "batch": batch,
            "memory": {
                "type": "object",
                "properties": {
                    "peak_rss_bytes": {"type": "integer", "minimum": 0},
                    "rss_bytes": {"type": "integer", "minimum": 0},
                    "rss_before_load_bytes": {"type": "integer", "minimum": 0},
                    "rss_after_load_bytes": {"type": "integer", "minimum": 0},
                    "peak_rss_growth_bytes": {"type": "integer", "minimum": 0},
                    "model_bytes": {"type": "integer", "minimum": 0},
                    "cuda_max_allocated_bytes": {"type": ["integer", "null"], "minimum": 0},
                },
            },
            "vocabulary": _VOCABULARY,
            "tokens": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "features": _FEATURES,
            "projection_2d": {"type": "array", "items": _POINT},
            "explained_variance_ratio": _POINT,
        },
    }


_BATCH = {
    "type": "object",
    "required": [
        "batch_size",
        "total_s",
        "per_window_ms",
        "real_time_factor",
        "speedup_vs_single",
        "max_abs_difference_vs_single",
    ],
    "properties": {
        "batch_size": {"type": "integer", "minimum": 1},
        "total_s": _NON_NEGATIVE,
        "per_window_ms": _NON_NEGATIVE,
        "real_time_factor": _NON_NEGATIVE,
        "speedup_vs_single": _NUMBER_OR_NULL,
        "max_abs_difference_vs_single": _NON_NEGATIVE,
    },
}

_PITCH = {
    "type": "object",
    "required": ["accuracy", "folds", "events", "classes", "chance"],
    "properties": {
        "accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "folds": {"type": "integer", "minimum": 0},
        "events": {"type": "integer", "minimum": 0},
        "classes": {"type": "integer", "minimum": 0},
        "chance": _NUMBER_OR_NULL,
    },
}
_R2 = {
    "type": "object",
    "required": ["r2", "folds", "events", "target_variance"],
    "properties": {
        "r2": _NUMBER_OR_NULL,
        "folds": {"type": "integer", "minimum": 0},
        "events": {"type": "integer", "minimum": 0},
        "target_variance": _NON_NEGATIVE,
    },
}

#: Schema of the results JSON (``schema_version`` 1).
RESULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "tool", "input", "settings", "pipelines", "probes", "recommendations", "warnings"],
    "properties": {
        "schema_version": {"type": "integer", "enum": [1]},
        "tool": {"type": "string", "enum": ["musichal-compare"]},
        "input": {
            "type": "object",
            "required": ["file", "sample_rate_hz", "audio_seconds", "events", "segmentation", "reference"],
            "properties": {
                "file": {"type": "string"},
                "sample_rate_hz": {"type": "integer", "minimum": 1},
                "audio_seconds": {"type": "number", "minimum": 0},
                "events": {"type": "integer", "minimum": 2},
                "segmentation": {"type": "string", "enum": ["onsets", "fixed"]},
                "segmentation_seconds": _NON_NEGATIVE,
                "reference": {"type": ["string", "null"]},
                "segments_limit": {"type": ["integer", "null"]},
                "duration_limit_s": _NUMBER_OR_NULL,
            },
        },
        "settings": {
            "type": "object",
            "required": ["vocabulary_size", "seed", "encoder_deadline_ms"],
            "properties": {
                "vocabulary_size": {"type": "integer", "minimum": 2},
                "seed": {"type": "integer"},
                "encoder_deadline_ms": {"type": "number", "minimum": 0},
                "window_ms": _NON_NEGATIVE,
                "use_gpu": {"type": "boolean"},
            },
        },
        "pipelines": {
            "type": "object",
            "required": ["traditional", "wav2vec"],
            "properties": {"traditional": _pipeline({"type": "null"}), "wav2vec": _pipeline(_BATCH)},
        },
        "probes": {
            "type": "object",
            "required": ["pitch_class", "consonance"],
            "properties": {
                "pitch_class": {
                    "type": "object",
                    "required": ["label_source", "events_labelled", "traditional", "wav2vec"],
                    "properties": {
                        "label_source": {"type": "string", "enum": ["reference", "f0_estimate"]},
                        "events_labelled": {"type": "integer", "minimum": 0},
                        "traditional": _PITCH,
                        "wav2vec": _PITCH,
                    },
                },
                "consonance": {
                    "type": "object",
                    "required": ["target_source", "traditional", "wav2vec"],
                    "properties": {
                        "target_source": {
                            "type": "string",
                            "enum": ["reference_chord", "traditional_consonance_dimension"],
                        },
                        "traditional": _R2,
                        "wav2vec": _R2,
                    },
                },
            },
        },
        "recommendations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["criterion", "choice", "reason"],
                "properties": {
                    "criterion": {"type": "string"},
                    "choice": {"type": "string", "enum": _CHOICES},
                    "reason": {"type": "string"},
                },
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}

_TYPES = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, (list, tuple)),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(value: Any, schema: Mapping[str, Any] = RESULTS_SCHEMA, *, path: str = "$") -> None:
    """Check ``value`` against ``schema``; raise :class:`ParameterError` (``"$.a.b: …"``) on the first mismatch.

    Numbers must be finite; ``integer`` excludes booleans; ``number`` accepts integers.
    """
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_TYPES[kind](value) for kind in kinds):
            raise ParameterError(f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}")
    if value is None:
        return
    if "enum" in schema and value not in schema["enum"]:
        raise ParameterError(f"{path}: {value!r} is not one of {schema['enum']}")
    if _TYPES["number"](value):
        if value != value or value in (float("inf"), float("-inf")):
            raise ParameterError(f"{path}: {value} is not finite")
        if "minimum" in schema and value < schema["minimum"]:
            raise ParameterError(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ParameterError(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, Mapping):
        for key in schema.get("required", ()):
            if key not in value:
                raise ParameterError(f"{path}: missing required key {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                validate(value[key], sub, path=f"{path}.{key}")
    elif isinstance(value, (list, tuple)) and "items" in schema:
        for index, item in enumerate(value):
            validate(item, schema["items"], path=f"{path}[{index}]")
