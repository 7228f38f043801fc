"""The bad-input matrix, shared by ``tests/reliability/test_bad_input.py`` and ``benchmarks/reliability.py``.

Each :class:`Case` builds one input in a folder (a WAV, a non-audio file with an audio name, a damaged model, a
missing device) and :func:`run_case` feeds it to the library entry points a user reaches: ``probe_audio_file`` +
``load_audio_internal`` (live ``--input-file`` and the trainer's decoding), the trainer's per-file
``analyze_path`` (which must skip, never raise) and ``services.preflight.preflight`` (what ``musichal`` checks before
Ray
starts). A case passes when good input is accepted with finite 48 kHz mono output, and bad input raises a
:class:`~shared.errors.MusicHalError` whose message is one line (the trainer: one-line skip reason).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Case", "CaseResult", "all_cases", "run_case", "make_model", "GOOD_RATES_HZ", "SUBTYPES"]

GOOD_RATES_HZ = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000)
SUBTYPES = ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")


@dataclass(frozen=True)
class Case:
    """``build(folder, model_path) -> dict`` returns the keyword arguments of the check (e.g. ``path=``)."""

    category: str
    name: str
    expect: str  # "ok" | "error" | "tolerated" (ok or a clean error: e.g. a truncated file played as far as it goes)
    build: Callable[[Path, Path], dict[str, Any]]

    @property
    def id(self) -> str:
        return f"{self.category}-{self.name}"


@dataclass
class CaseResult:
    case: Case
    passed: bool
    outcome: str  # "ok" or "error: <message>"
    detail: str = ""


# ------------------------------------------------------------------------------------------ builders
def _tone(seconds: float, rate_hz: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    notes = 220.0 * 2 ** (np.floor(t / 0.25) % 5 / 12.0)  # steps every 250 ms so the segmenter finds onsets
    envelope = np.exp(-6.0 * (t % 0.25))
    mono = amplitude * envelope * np.sin(2 * np.pi * notes * t)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float64)


def _wav(data: np.ndarray, rate_hz: int, subtype: str = "PCM_16", name: str = "a.wav", fmt: str | None = None):
    def build(folder: Path, _model: Path) -> dict[str, Any]:
        import soundfile as sf

        path = folder / name
        sf.write(str(path), data, rate_hz, subtype=subtype, format=fmt)
        return {"path": path}

    return build


def _bytes(payload: bytes, name: str):
    def build(folder: Path, _model: Path) -> dict[str, Any]:
        path = folder / name
        path.write_bytes(payload)
        return {"path": path}

    return build


def _truncated_wav(fraction: float, name: str = "truncated.wav"):
    def build(folder: Path, _model: Path) -> dict[str, Any]:
        import soundfile as sf

        full = folder / f"full_{name}"
        sf.write(str(full), _tone(1.0, 48000), 48000, subtype="PCM_16")
        payload = full.read_bytes()
        full.unlink()
        path = folder / name
        path.write_bytes(payload[: max(1, int(len(payload) * fraction))])
        return {"path": path}

    return build


def _corrupt_header(offset: int, value: bytes, name: str):
    def build(folder: Path, _model: Path) -> dict[str, Any]:
        import soundfile as sf

        path = folder / name
        sf.write(str(path), _tone(0.5, 48000), 48000, subtype="PCM_16")
        payload = bytearray(path.read_bytes())
        payload[offset : offset + len(value)] = value
        path.write_bytes(bytes(payload))
        return {"path": path}

    return build


def _directory(name: str):
    def build(folder: Path, _model: Path) -> dict[str, Any]:
        path = folder / name
        path.mkdir()
        return {"path": path}

    return build


def _nonfinite(value: float):
    data = _tone(1.0, 48000)
    data[1000:1010] = value
    return _wav(data.astype(np.float32), 48000, "FLOAT", name=f"nonfinite_{value}.wav")


def _midi_bytes() -> bytes:
    return (
        b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x0c"
        b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00"
    )


# models ------------------------------------------------------------------------------------------
def make_model(folder: Path) -> Path:
    """A small valid traditional model (trained in-process on a rendered tone clip); returns its JSON path."""
    import soundfile as sf

    from services.trainer.pipeline import train
    from shared.config import MusicHalConfig

    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / "train.wav"
    sf.write(str(clip), _tone(6.0, 48000), 48000, subtype="PCM_16")
    output = folder / "good.json"
    train(
        [clip],
        config=MusicHalConfig().with_overrides({"quantizer.vocabulary_size": 8}),
        output=output,
        cache_dir=folder / "cache",
    )
    return output


def _copy_model(model: Path, folder: Path, name: str) -> Path:
    from shared.model_io import arrays_path_for

    target = folder / f"{name}.json"
    target.write_bytes(model.read_bytes())
    arrays_path_for(target).write_bytes(arrays_path_for(model).read_bytes())
    # the JSON names its arrays file; keep the name it expects
    import orjson

    doc = orjson.loads(target.read_bytes())
    if doc.get("arrays_file") and doc["arrays_file"] != arrays_path_for(target).name:
        doc["arrays_file"] = arrays_path_for(target).name
        target.write_bytes(orjson.dumps(doc))
    return target


def _model_edit(edit: Callable[[Path], None], name: str):
    def build(folder: Path, model: Path) -> dict[str, Any]:
        target = _copy_model(model, folder, name)
        edit(target)
        return {"model_path": target}

    return build


def _truncate(fraction: float, which: str):
    def edit(path: Path) -> None:
        from shared.model_io import arrays_path_for

        target = path if which == "json" else arrays_path_for(path)
        payload = target.read_bytes()
        target.write_bytes(payload[: int(len(payload) * fraction)])

    return edit


def _json_field(key: str, value: Any):
    def edit(path: Path) -> None:
        import orjson

        doc = orjson.loads(path.read_bytes())
        doc[key] = value
        path.write_bytes(orjson.dumps(doc))

    return edit


def _resave(change: Callable[[dict, dict], None]):
    """Rewrite a consistent model (valid hashes) whose content is wrong: the deeper checks must catch it."""

    def edit(path: Path) -> None:
        from shared.model_io import load_model, save_model

        meta, arrays = load_model(path)
        arrays = {k: np.array(v) for k, v in arrays.items()}
        change(meta, arrays)
        save_model(path, meta, arrays)

    return edit


def _delete_array(key: str):
    return _resave(lambda meta, arrays: arrays.pop(key))


def _set_array(key: str, make: Callable[[np.ndarray], np.ndarray]):
    def change(meta: dict, arrays: dict) -> None:
        arrays[key] = make(arrays[key])

    return _resave(change)


def _set_meta(path_keys: tuple[str, ...], value: Any):
    def change(meta: dict, arrays: dict) -> None:
        node = meta
        for key in path_keys[:-1]:
            node = node[key]
        node[path_keys[-1]] = value

    return _resave(change)


def _remove_arrays_file(path: Path) -> None:
    from shared.model_io import arrays_path_for

    arrays_path_for(path).unlink()


def _devices(**kwargs: Any):
    def build(folder: Path, _model: Path) -> dict[str, Any]:
        return dict(kwargs)

    return build


def all_cases() -> list[Case]:
    """Every case of the matrix, in a stable order."""
    cases: list[Case] = []
    add = cases.append
    # WAV content
    add(Case("wav", "empty-0-frames", "error", _wav(np.zeros((0, 1)), 48000)))
    add(Case("wav", "zero-bytes", "error", _bytes(b"", "zero.wav")))
    add(Case("wav", "header-only", "tolerated", _truncated_wav(0.0005, "header_only.wav")))
    add(Case("wav", "truncated-half", "tolerated", _truncated_wav(0.5)))
    add(Case("wav", "truncated-odd-byte", "tolerated", _truncated_wav(0.7331, "odd.wav")))
    add(Case("wav", "corrupt-riff-magic", "error", _corrupt_header(0, b"JUNK", "magic.wav")))
    add(Case("wav", "corrupt-format-tag", "error", _corrupt_header(20, b"\x99\x77", "fmt.wav")))
    add(Case("wav", "corrupt-channels-zero", "error", _corrupt_header(22, b"\x00\x00", "chan0.wav")))
    add(Case("wav", "corrupt-rate-zero", "error", _corrupt_header(24, b"\x00\x00\x00\x00", "rate0.wav")))
    add(Case("wav", "corrupt-bits", "tolerated", _corrupt_header(34, b"\x07\x00", "bits.wav")))
    add(Case("wav", "nan-samples", "error", _nonfinite(float("nan"))))
    add(Case("wav", "inf-samples", "error", _nonfinite(float("inf"))))
    add(Case("wav", "silent", "ok", _wav(np.zeros((48000, 1)), 48000, name="silent.wav")))
    add(
        Case(
            "wav",
            "clipped-int16",
            "ok",
            _wav(np.clip(_tone(1.0, 48000, amplitude=8.0), -1, 1), 48000, name="clip16.wav"),
        )
    )
    add(
        Case(
            "wav",
            "clipped-float-over-1",
            "ok",
            _wav(_tone(1.0, 48000, amplitude=6.0).astype(np.float32), 48000, "FLOAT", name="clipf.wav"),
        )
    )
    add(Case("wav", "rate-too-low-500Hz", "error", _wav(_tone(1.0, 500), 500, name="r500.wav")))
    for channels in range(1, 9):
        add(Case("channels", f"{channels}ch", "ok", _wav(_tone(0.6, 48000, channels), 48000, name=f"c{channels}.wav")))
    for rate in GOOD_RATES_HZ:
        add(Case("rates", f"{rate}Hz", "ok", _wav(_tone(0.6, rate), rate, name=f"r{rate}.wav")))
    for subtype in SUBTYPES:
        add(Case("subtypes", subtype, "ok", _wav(_tone(0.6, 44100, 2), 44100, subtype, name=f"s_{subtype}.wav")))
    add(Case("subtypes", "FLAC-24", "ok", _wav(_tone(0.6, 96000, 2), 96000, "PCM_24", name="s.flac", fmt="FLAC")))
    # not audio, audio names
    rng = np.random.default_rng(0)
    add(Case("not-audio", "text.wav", "error", _bytes(b"this is not audio\n" * 50, "text.wav")))
    add(Case("not-audio", "png.flac", "error", _bytes(b"\x89PNG\r\n\x1a\n" + bytes(200), "image.flac")))
    add(
        Case(
            "not-audio",
            "random.mp3",
            "error",
            _bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "noise.mp3"),
        )
    )
    add(
        Case(
            "not-audio",
            "random.ogg",
            "error",
            _bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "noise.ogg"),
        )
    )
    add(Case("not-audio", "midi.wav", "error", _bytes(_midi_bytes(), "song.wav")))
    add(Case("not-audio", "json.aiff", "error", _bytes(b'{"a": 1}', "data.aiff")))
    add(Case("not-audio", "directory.wav", "error", _directory("folder.wav")))
    add(Case("not-audio", "missing.wav", "error", lambda folder, _m: {"path": folder / "does_not_exist.wav"}))
    # model files
    add(Case("model", "valid", "ok", _model_edit(lambda p: None, "valid")))
    add(Case("model", "missing", "error", lambda folder, _m: {"model_path": folder / "nope.json"}))
    add(Case("model", "json-truncated", "error", _model_edit(_truncate(0.5, "json"), "json_trunc")))
    add(Case("model", "json-empty", "error", _model_edit(_truncate(0.0, "json"), "json_empty")))
    add(Case("model", "json-not-object", "error", _model_edit(lambda p: p.write_bytes(b"[1, 2, 3]"), "json_list")))
    add(Case("model", "arrays-truncated", "error", _model_edit(_truncate(0.5, "arrays"), "arr_trunc")))
    add(Case("model", "arrays-file-missing", "error", _model_edit(_remove_arrays_file, "arr_missing")))
    add(Case("model", "wrong-format-version", "error", _model_edit(_json_field("format_version", 99), "version99")))
    add(Case("model", "wrong-schema", "error", _model_edit(_set_meta(("musichal_model",), 7), "schema7")))
    add(Case("model", "no-oracle-section", "error", _model_edit(_set_meta(("oracle",), None), "no_oracle")))
    add(Case("model", "missing-oracle-array", "error", _model_edit(_delete_array("oracle.audio.trn_dst"), "miss_trn")))
    add(
        Case(
            "model",
            "missing-centroids",
            "error",
            _model_edit(_delete_array("perception.traditional.quantizer.centroids"), "miss_centroids"),
        )
    )
    add(
        Case(
            "model",
            "nan-centroids",
            "error",
            _model_edit(
                _set_array("perception.traditional.quantizer.centroids", lambda a: np.full_like(a, np.nan)),
                "nan_centroids",
            ),
        )
    )
    add(
        Case(
            "model",
            "nan-frames",
            "error",
            _model_edit(_set_array("oracle.audio.frames", lambda a: np.full_like(a, np.nan)), "nan_frames"),
        )
    )
    add(
        Case(
            "model",
            "transition-out-of-range",
            "error",
            _model_edit(_set_array("oracle.audio.trn_dst", lambda a: a + 10_000), "trn_range"),
        )
    )
    add(
        Case(
            "model",
            "negative-suffix-links",
            "error",
            _model_edit(_set_array("oracle.tokens.sfx", lambda a: a - 1000), "sfx_neg"),
        )
    )
    add(
        Case(
            "model",
            "frames-wrong-shape",
            "error",
            _model_edit(_set_array("oracle.audio.frames", lambda a: a[:, :5].copy()), "frames_shape"),
        )
    )
    add(
        Case(
            "model",
            "states-count-lies",
            "error",
            _model_edit(_set_meta(("oracle", "audio", "n_states"), 10_000), "nstates"),
        )
    )
    add(
        Case(
            "model",
            "threshold-nan",
            "error",
            _model_edit(_set_meta(("oracle", "audio", "threshold"), float("nan")), "thr_nan"),
        )
    )
    add(
        Case(
            "model",
            "vocabulary-zero",
            "error",
            _model_edit(_set_meta(("perception", "quantizers", "traditional", "vocabulary_size"), 0), "vocab0"),
        )
    )
    # devices
    add(Case("device", "midi-port-missing", "error", _devices(midi_port="no-such-synth-port", midi_api="jack")))
    add(Case("device", "midi-port-index-out-of-range", "error", _devices(midi_port="97", midi_api="jack")))
    add(Case("device", "audio-device-missing", "error", _devices(input_device="no-such-sound-card")))
    add(Case("device", "audio-device-index-missing", "error", _devices(input_device="99")))
    add(Case("device", "wav2vec-dir-missing", "error", _devices(wav2vec_model="/nonexistent/wav2vec2-dir")))
    add(
        Case(
            "device",
            "wav2vec-dir-empty",
            "error",
            lambda folder, _m: (folder.joinpath("w2v_empty").mkdir(), {"wav2vec_model": str(folder / "w2v_empty")})[1],
        )
    )
    add(Case("device", "wav2vec-hub-not-cached", "error", _devices(wav2vec_model="nobody-here/no-such-wav2vec")))
    return cases


# ------------------------------------------------------------------------------------------ checks
def _one_line(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text.strip() and "Traceback" not in text


def _check_audio(case: Case, path: Path) -> CaseResult:
    from services.trainer.analysis import analyze_path, feature_settings, make_perception
    from shared.audio import INTERNAL_SAMPLE_RATE_HZ, load_audio_internal, probe_audio_file
    from shared.config import MusicHalConfig
    from shared.errors import MusicHalError

    try:
        info = probe_audio_file(path)
        audio = load_audio_internal(path)
    except MusicHalError as error:
        message = str(error)
        passed = case.expect in ("error", "tolerated") and _one_line(message) and path.name in message
        return CaseResult(case, passed, f"error: {message}", "" if passed else "unexpected or unclear error")
    except Exception as error:  # anything else is a bug: a raw decoder exception reaching the user
        return CaseResult(case, False, f"raw {type(error).__name__}: {error}", "non-MusicHal exception")
    problems = []
    if audio.dtype != np.float32 or audio.ndim != 1 or not np.isfinite(audio).all():
        problems.append(f"bad output {audio.dtype} {audio.shape}")
    expected = info.frames * INTERNAL_SAMPLE_RATE_HZ / info.sample_rate_hz
    if case.expect == "ok" and abs(audio.size - expected) > 0.01 * expected + 64:
        problems.append(f"{audio.size} samples, expected about {expected:.0f}")
    # the trainer's per-file analysis must not raise either; it reports a one-line reason when it skips
    config = MusicHalConfig()
    perception = make_perception(config)
    try:
        outcome = analyze_path(
            path,
            index=0,
            name=path.name,
            config=config,
            perception=perception,
            settings=feature_settings(config, perception),
            cache=None,
        )
        if outcome.reason is not None and not _one_line(outcome.reason):
            problems.append(f"trainer skip reason not one line: {outcome.reason!r}")
        if outcome.ok and not all(np.isfinite(v).all() for v in outcome.views.values()):
            problems.append("trainer features not finite")
    except Exception as error:
        problems.append(f"trainer analyze_path raised {type(error).__name__}: {error}")
    if case.expect == "error":
        problems.append("accepted, expected a clear error")
    return CaseResult(case, not problems, "ok", "; ".join(problems))


def _check_preflight(case: Case, kwargs: dict[str, Any], good_wav: Path) -> CaseResult:
    from services.preflight import preflight
    from shared.config import MusicHalConfig
    from shared.errors import MusicHalError

    overrides: dict[str, Any] = {"midi.api": kwargs.get("midi_api", "jack")}
    if "midi_port" in kwargs:
        overrides["midi.port"] = kwargs["midi_port"]
    if "wav2vec_model" in kwargs:
        overrides.update({"features.kind": "wav2vec", "wav2vec.model": kwargs["wav2vec_model"]})
    config = MusicHalConfig().with_overrides(overrides)
    input_file = None if "input_device" in kwargs else str(good_wav)
    try:
        preflight(
            config,
            input_file=input_file,
            input_device=kwargs.get("input_device"),
            model_path=str(kwargs["model_path"]) if "model_path" in kwargs else None,
        )
    except MusicHalError as error:
        message = str(error)
        passed = case.expect == "error" and _one_line(message)
        return CaseResult(case, passed, f"error: {message}", "" if passed else "unexpected or unclear error")
    except Exception as error:
        return CaseResult(case, False, f"raw {type(error).__name__}: {error}", "non-MusicHal exception")
    return CaseResult(
        case, case.expect == "ok", "ok", "" if case.expect == "ok" else "accepted, expected a clear error"
    )


def run_case(case: Case, folder: Path, model: Path, good_wav: Path) -> CaseResult:
    """Build ``case`` in ``folder`` (a fresh directory) and check it; never raises."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        kwargs = case.build(folder, model)
    except Exception as error:  # the builder itself failed: report, do not count as passed
        return CaseResult(case, False, f"build failed: {type(error).__name__}: {error}", "builder")
    if "path" in kwargs:
        return _check_audio(case, Path(kwargs["path"]))
    return _check_preflight(case, kwargs, good_wav)


def written_files(folder: Path) -> set[str]:
    """Relative names of every file under ``folder`` (to prove nothing was written half-way)."""
    return {str(Path(root, name).relative_to(folder)) for root, _dirs, names in os.walk(folder) for name in names}
