"""Bad input, the way a user meets it: damaged or odd audio files, damaged models, missing devices.

Most cases run at library level (``testkit/reliability_cases.py``: the same matrix ``benchmarks/reliability.py``
counts); a handful run the real ``musichal`` / ``musichal-train`` commands and check the user-facing contract: one
line on stderr and no traceback, a non-zero exit, nothing written half-way (no SMF, no model), and — for checks that
can be made before starting — Ray never started (``RAY_TMPDIR`` stays empty).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.reliability_cases import all_cases, make_model, run_case, written_files

REPO = Path(__file__).resolve().parents[2]
CASES = all_cases()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reliability_model")
    make_model(folder)
    return folder


@pytest.mark.parametrize("case", [c for c in CASES if c.category != "device"], ids=lambda c: c.id)
def test_bad_input_case(case, model_dir, tmp_path):
    result = run_case(case, tmp_path / "case", model_dir / "good.json", model_dir / "train.wav")
    assert result.passed, f"{case.id} (expected {case.expect}): {result.outcome} — {result.detail}"


@pytest.mark.jack
@pytest.mark.parametrize("case", [c for c in CASES if c.category == "device"], ids=lambda c: c.id)
def test_missing_device_case(case, jack_server, model_dir, tmp_path):
    result = run_case(case, tmp_path / "case", model_dir / "good.json", model_dir / "train.wav")
    assert result.passed, f"{case.id}: {result.outcome} — {result.detail}"


def test_the_matrix_covers_what_the_issue_lists():
    ids = {c.id for c in CASES}
    assert {f"channels-{n}ch" for n in range(1, 9)} <= ids
    assert {
        "rates-8000Hz",
        "rates-192000Hz",
        "subtypes-PCM_16",
        "subtypes-PCM_24",
        "subtypes-PCM_32",
        "subtypes-FLOAT",
    } <= ids
    assert {
        "wav-empty-0-frames",
        "wav-truncated-half",
        "wav-corrupt-riff-magic",
        "wav-nan-samples",
        "wav-inf-samples",
        "wav-silent",
        "wav-clipped-int16",
        "not-audio-text.wav",
        "model-json-truncated",
        "model-wrong-format-version",
        "model-missing-oracle-array",
        "model-nan-frames",
        "device-midi-port-missing",
        "device-audio-device-missing",
        "device-wav2vec-dir-missing",
    } <= ids


# ------------------------------------------------------------------------------------------ the commands
def _run(command: list[str], cwd: Path, ray_tmp: Path, timeout_s: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)


def _assert_one_clear_line(result: subprocess.CompletedProcess, prog: str, *, needle: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    assert needle in lines[0], lines[0]


def _musichal_cases(tmp: Path, model_dir: Path, reader_port: str) -> list[tuple[str, list[str], str]]:
    from testkit.reliability_cases import _model_edit, _set_array

    (tmp / "text.wav").write_bytes(b"not audio at all\n" * 10)
    bad_model = _model_edit(_set_array("oracle.audio.trn_dst", lambda a: a + 10_000), "bad_model")(
        tmp, model_dir / "good.json"
    )
    good = str(model_dir / "train.wav")
    return [
        ("not-audio", ["--input-file", str(tmp / "text.wav")], "not a readable audio file"),
        ("bad-model", ["--input-file", good, "--model", str(bad_model["model_path"])], "transition points outside"),
        ("midi-port", ["--input-file", good, "--midi-api", "jack", "--midi-port", "no-such-synth"], "not found"),
        (
            "audio-device",
            ["--input-device", "no-such-sound-card", "--midi-port", reader_port, "--midi-api", "jack"],
            "no audio input device matching",
        ),
        ("wav2vec", ["--input-file", good, "--wav2vec", "--wav2vec-model", str(tmp / "no_w2v")], "does not exist"),
    ]


@pytest.mark.jack
def test_musichal_fails_before_ray_with_one_line_and_writes_nothing(jack_server, model_dir, tmp_path):
    from testkit.midi import JackReader

    reader = JackReader()
    port = reader.open_virtual("in")
    try:
        cases = _musichal_cases(tmp_path, model_dir, port)
        for name, args, needle in cases:
            work = tmp_path / name
            work.mkdir()
            ray_tmp = tmp_path / f"ray_{name}"
            result = _run(
                [
                    sys.executable,
                    str(REPO / "launch.py"),
                    *args,
                    "--record",
                    str(work / "out.mid"),
                    "--save-learned",
                    str(work / "learned.json"),
                    "--quiet",
                ],
                work,
                ray_tmp,
            )
            assert result.returncode == 2, (name, result.stdout, result.stderr)
            _assert_one_clear_line(result, "musichal", needle=needle)
            assert written_files(work) == set(), f"{name}: files written half-way: {written_files(work)}"
            assert not ray_tmp.exists() or not any(ray_tmp.iterdir()), f"{name}: Ray was started before the check"
    finally:
        reader.close()


def test_musichal_train_missing_file_fails_before_ray(tmp_path):
    ray_tmp = tmp_path / "ray"
    result = _run(
        [
            sys.executable,
            "-m",
            "services.trainer.cli",
            "--file",
            str(tmp_path / "missing.wav"),
            "--output",
            str(tmp_path / "m.json"),
            "--quiet",
        ],
        REPO,
        ray_tmp,
    )
    assert result.returncode == 1
    _assert_one_clear_line(result, "musichal-train", needle="missing.wav")
    assert not (tmp_path / "m.json").exists() and not (ray_tmp.exists() and any(ray_tmp.iterdir()))


def test_musichal_train_with_nothing_usable_exits_1_before_ray_and_writes_no_model(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "text.wav").write_bytes(b"hello\n" * 100)
    (corpus / "zero.flac").write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    result = _run(
        [
            sys.executable,
            "-m",
            "services.trainer.cli",
            "--dir",
            str(corpus),
            "--output",
            str(out / "m.json"),
            "--quiet",
            "--workers",
            "1",
        ],
        REPO,
        tmp_path / "ray",
    )
    assert result.returncode == 1, result.stderr
    _assert_one_clear_line(result, "musichal-train", needle="nothing usable")
    assert written_files(out) == set()
    assert not (tmp_path / "ray").exists() or not any((tmp_path / "ray").iterdir())
