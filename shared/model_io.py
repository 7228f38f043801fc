"""The model container: ``model.json`` (orjson, ``format_version``) + sibling ``model.safetensors`` for arrays.

Stages own their schemas (what goes in ``meta`` and ``arrays``); this module owns the container: atomic
writes (temp file + rename, arrays first so a reader never sees JSON pointing at missing arrays), one-line
:class:`~shared.errors.ModelFormatError` on anything wrong, and no pickle anywhere.

Integer-keyed dicts cannot survive JSON (keys become strings) — store transitions as arrays or lists of pairs.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> save_model(os.path.join(d, "m.json"), {"kind": "demo"}, {"x": np.arange(3, dtype=np.int64)})
>>> meta, arrays = load_model(os.path.join(d, "m.json"))
>>> meta["kind"], arrays["x"].tolist()
('demo', [0, 1, 2])
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from shared.errors import ModelFormatError, ParameterError

__all__ = [
    "FORMAT_VERSION",
    "MODEL_KIND",
    "save_model",
    "load_model",
    "arrays_path_for",
    "atomic_write_bytes",
    "current_umask",
]

FORMAT_VERSION = 1
MODEL_KIND = "musichal-model"


def arrays_path_for(json_path: str | Path) -> Path:
    """``model.json`` → ``model.safetensors`` (same folder, same stem)."""
    json_path = Path(json_path)
    return json_path.with_suffix(".safetensors")


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """This process's umask, read without changing it where Linux reports it (else set and restored under a lock)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temp file in the same folder and ``os.replace``.

    The file gets the permissions any new file of the user gets (0666 less the umask), like ``open(path, "w")``:
    ``mkstemp`` alone would leave it 0600. Used for every output MusicHal writes whole (models, SMF, stats).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_model(path: str | Path, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``meta`` (JSON-able, numpy scalars allowed) and ``arrays`` atomically. Output is byte-deterministic."""
    from safetensors.numpy import save as save_arrays

    path = Path(path)
    if path.suffix != ".json":
        raise ParameterError(f"model path must end in .json, got {path}")
    clean: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        array = np.ascontiguousarray(value)
        if array.dtype == object:
            raise ParameterError(f"array {key!r} has dtype object; only numeric arrays are stored")
        clean[key] = array
    array_bytes = save_arrays(dict(sorted(clean.items()))) if clean else b""
    document = {
        "format": MODEL_KIND,
        "format_version": FORMAT_VERSION,
        "arrays_file": arrays_path_for(path).name if clean else None,
        "arrays_sha256": hashlib.sha256(array_bytes).hexdigest() if clean else None,
        "array_names": sorted(clean),
        "meta": meta,
    }
    payload = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    if clean:
        atomic_write_bytes(arrays_path_for(path), array_bytes)
    atomic_write_bytes(path, payload)


def load_model(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and validate a model; returns ``(meta, arrays)`` or raises ModelFormatError with one line."""
    from safetensors.numpy import load as load_arrays

    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: model file not found")
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise ModelFormatError(f"{path}: not valid JSON (truncated or corrupt): {error}") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_KIND:
        raise ModelFormatError(f"{path}: not a MusicHal model file")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: format_version {version!r} is not supported (this MusicHal reads {FORMAT_VERSION})"
        )
    meta = document.get("meta")
    names = document.get("array_names")
    if not isinstance(meta, dict) or not isinstance(names, list):
        raise ModelFormatError(f"{path}: 'meta' or 'array_names' missing or malformed")
    arrays: dict[str, np.ndarray] = {}
    if names:
        arrays_file = path.parent / str(document.get("arrays_file"))
        if not arrays_file.is_file():
            raise ModelFormatError(f"{path}: array file {arrays_file.name} is missing")
        payload = arrays_file.read_bytes()
        if hashlib.sha256(payload).hexdigest() != document.get("arrays_sha256"):
            raise ModelFormatError(
                f"{path}: array file {arrays_file.name} does not match the model (truncated, corrupt or from another "
                "model)"
            )
        try:
            arrays = load_arrays(payload)
        except Exception as error:
            raise ModelFormatError(f"{path}: array file {arrays_file.name} is corrupt: {error}") from None
        missing = sorted(set(names) - set(arrays))
        if missing:
            raise ModelFormatError(f"{path}: arrays missing from {arrays_file.name}: {', '.join(missing)}")
    return meta, arrays
