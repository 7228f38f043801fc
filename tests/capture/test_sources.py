"""Input sources: the file player behind the InputSource protocol (the device stream is covered by the live tests)."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import soundfile as sf

from services.capture.devices import AudioInputStream
from services.capture.sources import FilePlayer, InputSource, open_input_source
from shared.errors import ParameterError


def _recorder():
    pushed: list[tuple[np.ndarray, bool]] = []
    first = threading.Event()

    def push(block, *, last: bool = False) -> int:
        pushed.append((np.array(block, copy=True), last))
        first.set()
        return len(pushed)

    return pushed, first, push


def test_file_player_plays_every_frame_once_and_flags_the_last_block(tmp_path):
    rng = np.random.default_rng(0)
    data = (0.1 * rng.standard_normal((44100, 2))).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, data, 44100, subtype="FLOAT")
    pushed, _, push = _recorder()
    # a clock that jumps 1000 s per reading: every block is late, so the player never waits
    source: InputSource = FilePlayer(str(path), push, block_frames=256, clock=itertools.count(0, 1000).__next__)
    assert (source.kind, source.name, source.sample_rate_hz, source.channels) == ("input file", str(path), 44100, 2)
    source.start()
    assert source.done.wait(60)
    source.close()
    assert source.error is None
    np.testing.assert_array_equal(np.concatenate([block for block, _ in pushed]), data)
    assert [last for _, last in pushed] == [False] * (len(pushed) - 1) + [True]
    assert len(pushed) == -(-44100 // 256)
    assert source.counters() == {"late_blocks": len(pushed)}


def test_close_stops_a_looping_player(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, np.zeros((4800, 1), np.float32), 48000)
    pushed, first, push = _recorder()
    source = open_input_source(push, block_frames=256, input_file=str(path), loop=True)
    assert isinstance(source, FilePlayer)
    source.start()
    assert first.wait(60)
    source.close()
    assert source.done.wait(60)
    played = source.blocks_played
    assert played >= 1 and source.error is None
    assert not any(last for _, last in pushed)  # a looping input never ends by itself
    assert source.blocks_played == played


def test_bad_samples_are_reported_through_error(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros((2048, 1), np.float32)
    data[1000] = np.nan
    sf.write(path, data, 48000, subtype="FLOAT")
    _, _, push = _recorder()
    source = open_input_source(push, block_frames=256, input_file=str(path), speed=1000.0)
    source.start()
    assert source.done.wait(60)
    source.close()
    assert isinstance(source.error, ParameterError) and "NaN" in str(source.error)


def test_bad_speed_raises(tmp_path):
    path = tmp_path / "s.wav"
    sf.write(path, np.zeros((480, 1), np.float32), 48000)
    with pytest.raises(ParameterError, match="speed"):
        open_input_source(lambda block, **_: 0, block_frames=256, input_file=str(path), speed=0.0)


def test_the_device_stream_has_the_protocol_members():
    members = [name for name in ("kind", "name", "start", "close", "counters") if not hasattr(AudioInputStream, name)]
    assert members == [] and AudioInputStream.kind == "audio input"
