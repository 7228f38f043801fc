"""Output files get the user's usual permissions (0666 less the umask) and out-of-range settings are one-line errors."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from shared.config import MusicHalConfig
from shared.errors import ParameterError
from shared.model_io import arrays_path_for, atomic_write_bytes, current_umask, save_model


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    previous = os.umask(0o022)
    os.umask(previous)
    masks = []

    def set_mask(mask: int) -> None:
        masks.append(mask)
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_atomic_write_respects_the_umask_like_open(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    with open(tmp_path / "b.bin", "wb") as handle:  # what any other program of the user would get
        handle.write(b"x")
    assert mode(tmp_path / "a.bin") == mode(tmp_path / "b.bin") == 0o666 & ~mask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_models_smf_stats_and_session_logs_are_0644_under_umask_022(tmp_path, umask):
    from services.midi_out.recorder import SmfRecorder
    from services.oracle.player.session import SessionLog
    from services.trainer.pipeline import stats_path_for

    umask(0o022)
    model = tmp_path / "model.json"
    save_model(model, {"kind": "demo"}, {"x": np.arange(3, dtype=np.int64)})
    recorder = SmfRecorder()
    recorder.record([0x90, 60, 100], t=0.0)
    recorder.record([0x80, 60, 0], t=0.5)
    smf = recorder.save(tmp_path / "take.mid")
    atomic_write_bytes(stats_path_for(model), b"{}")  # how the trainer writes its stats (and musichal --stats)
    log = SessionLog(tmp_path / "session.jsonl", config=MusicHalConfig())
    log.close()
    for path in (model, arrays_path_for(model), smf, stats_path_for(model), tmp_path / "session.jsonl"):
        assert mode(path) == 0o644, (path.name, oct(mode(path)))


def test_replacing_an_output_keeps_the_umask_mode_not_the_old_files(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "out.mid"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o644


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--duration", "-5"], "--duration must be a number of seconds > 0, got -5"),
        (["--duration", "0"], "--duration must be a number of seconds > 0, got 0"),
        (["--duration", "inf"], "--duration must be a number of seconds > 0, got inf"),
        (["--density", "9"], "generation.density must be in 0..4, got 9.0"),
        (["--continuity", "nan"], "generation.continuity must be a finite number, got nan"),
        (["--gate-release-ms", "inf"], "control.gate_release_ms must be a finite number, got inf"),
        (["--input-channel", "-1"], "audio.input_channel must be >= 0 or unset"),
        (["--osc-port", "70000"], "control.osc_port must be in 0..65535 or unset"),
    ],
)
def test_out_of_range_numbers_on_the_command_line_are_one_line_errors(tmp_path, capsys, argv, expected):
    from launch import main

    code = main(["--input-file", str(tmp_path / "missing.wav"), *argv])  # checked before the file or Ray
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == f"musichal: error: {expected}\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[generation]\ndensity = "high"\n', "generation.density must be a finite number, got 'high'"),
        ("[generation]\nseed = 1.5\n", "generation.seed must be a whole number, got 1.5"),
        ("[oracle]\ncheckpoint_seconds = inf\n", "oracle.checkpoint_seconds must be a finite number, got inf"),
        ("[audio]\nring_seconds = nan\n", "audio.ring_seconds must be a finite number, got nan"),
        ('[control]\ninput_gate = "yes"\n', "control.input_gate must be true or false, got 'yes'"),
        ("[midi]\nport = 3\n", "midi.port must be text, got 3"),
        ("[generation]\nmode = true\n", "generation.mode must be text, got True"),
    ],
)
def test_wrong_kinds_of_values_in_a_config_file_are_one_line_errors(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ParameterError) as caught:
        MusicHalConfig.from_toml(path)
    assert str(caught.value) == expected


def test_good_values_still_load_including_ints_for_floats_and_unset_optionals():
    config = MusicHalConfig().with_overrides(
        {
            "generation.density": 2,
            "oracle.threshold": 0.5,
            "audio.input_channel": 1,
            "generation.seed": np.int64(4),
            "generation.continuity": np.float32(0.5),
        }
    )
    assert config.generation.density == 2 and config.generation.seed == 4 and config.audio.input_channel == 1
    assert MusicHalConfig.from_mapping({"oracle": {"threshold": None}}).oracle.threshold is None
