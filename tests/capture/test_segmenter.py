from __future__ import annotations

import numpy as np
import pytest

from services.capture.segmenter import OnsetSegmenter, segment_signal
from shared.audio import StreamingFrontEnd, load_audio_internal
from shared.config import SegmenterConfig
from shared.errors import ParameterError
from testkit.audio import render_midi_notes, sine_tone
from tests.encoder.conftest import SCALE

SR = 48000


def _key(events):
    return [(e.event_id, e.onset_sample, e.window_start, e.window_end, e.strength) for e in events]


def test_scale_gives_exactly_eight_onsets_near_the_notes(scale_wav):
    signal = load_audio_internal(scale_wav)
    events = segment_signal(signal, SegmenterConfig(), sample_rate_hz=SR)
    assert len(events) == len(SCALE)
    expected = np.array([0.3 + 0.5 * i for i in range(len(SCALE))])
    onsets = np.array([e.onset_s for e in events])
    assert np.all(np.abs(onsets - expected) < 0.03)
    assert [e.event_id for e in events] == list(range(8))
    assert all(e.window_samples == 24000 for e in events)


def test_random_block_sizes_give_identical_events(scale_wav):
    signal = load_audio_internal(scale_wav)
    reference = segment_signal(signal, SegmenterConfig(), sample_rate_hz=SR, block_samples=4096)
    rng = np.random.default_rng(1)
    for trial in range(3):
        segmenter = OnsetSegmenter(SegmenterConfig(), sample_rate_hz=SR, clock=None)
        events, position = [], 0
        high = [7, 700, 9000][trial]
        while position < signal.size:
            size = int(rng.integers(0, high))  # zero-length blocks too
            events += segmenter.process(signal[position : position + size])
            position += size
        events += segmenter.finish()
        assert _key(events) == _key(reference)
        assert events == reference


def test_start_sample_offsets_indices_and_reset_restarts(scale_wav):
    signal = load_audio_internal(scale_wav)
    base = segment_signal(signal, SegmenterConfig(), sample_rate_hz=SR)
    shifted = segment_signal(signal, SegmenterConfig(), sample_rate_hz=SR, start_sample=1000)
    assert [e.onset_sample + 1000 for e in base] == [e.onset_sample for e in shifted]
    segmenter = OnsetSegmenter(SegmenterConfig(), sample_rate_hz=SR, clock=None)
    first = segmenter.process(signal) + segmenter.finish()
    segmenter.reset()
    second = segmenter.process(signal) + segmenter.finish()
    assert first == second == base
    with pytest.raises(ParameterError):
        segmenter.process(signal[:10])  # finished: needs reset


def test_a_chord_at_the_start_of_a_file_is_found(tmp_path):
    """A rendered file whose first chord sounds within its first frame (fluidsynth starts it ~2 ms in): that chord
    is an onset (the threshold counts the virtual silence before the stream as flux 0), and so are the next two."""
    chords = [(0.0, (43, 59, 62, 67)), (0.6, (55, 59, 62, 67)), (1.2, (52, 60, 64, 67))]
    notes = [(pitch, start, 0.6, 80) for start, pitches in chords for pitch in pitches]
    signal = load_audio_internal(render_midi_notes(notes, tmp_path / "chords.wav"))
    assert 0 < int(np.argmax(np.abs(signal) > 1e-3)) < 512  # sound from the first frame on
    onsets = [e.onset_s for e in segment_signal(signal, SegmenterConfig(), sample_rate_hz=SR)]
    assert len(onsets) == 3
    assert np.all(np.abs(np.array(onsets) - np.array([0.0, 0.6, 1.2])) < 0.02)


def test_silence_and_low_noise_give_no_events():
    assert segment_signal(np.zeros(SR * 2, np.float32), SegmenterConfig(), sample_rate_hz=SR) == []
    noise = (np.random.default_rng(0).standard_normal(SR * 2) * 1e-4).astype(np.float32)  # -80 dBFS
    assert segment_signal(noise, SegmenterConfig(), sample_rate_hz=SR) == []


def test_steady_tone_gives_one_event_and_min_gap_is_respected():
    tone = np.concatenate([np.zeros(SR // 4, np.float32), sine_tone(440.0, 1.5, SR)])
    events = segment_signal(tone, SegmenterConfig(), sample_rate_hz=SR)
    assert len(events) == 1 and abs(events[0].onset_sample - SR // 4) < 512
    clicks = np.zeros(SR, np.float32)
    clicks[np.arange(5) * 2400 + 1000] = 0.9  # every 50 ms
    dense = segment_signal(clicks, SegmenterConfig(min_gap_ms=10.0, window_ms=20.0), sample_rate_hz=SR)
    sparse = segment_signal(clicks, SegmenterConfig(min_gap_ms=120.0, window_ms=20.0), sample_rate_hz=SR)
    assert len(dense) == 5
    assert len(sparse) == 2
    assert np.all(np.diff([e.onset_sample for e in sparse]) >= 0.12 * SR)


def test_incomplete_final_window_is_dropped():
    tone = np.concatenate([np.zeros(SR // 4, np.float32), sine_tone(440.0, 0.3, SR)])  # ends 300 ms after onset
    assert segment_signal(tone, SegmenterConfig(window_ms=500.0), sample_rate_hz=SR) == []
    assert len(segment_signal(tone, SegmenterConfig(window_ms=200.0), sample_rate_hz=SR)) == 1


@pytest.mark.parametrize("bad", [np.zeros((10, 2), np.float32), np.zeros((2, 2, 2))])
def test_bad_blocks_raise(bad):
    with pytest.raises(ParameterError):
        OnsetSegmenter(SegmenterConfig(), sample_rate_hz=SR).process(bad)


def test_bad_construction_raises():
    with pytest.raises(ParameterError):
        OnsetSegmenter(SegmenterConfig(), sample_rate_hz=10)
    with pytest.raises(ParameterError):
        OnsetSegmenter(SegmenterConfig(), sample_rate_hz=SR, start_sample=-1)
    with pytest.raises(ParameterError):
        OnsetSegmenter("not a config", sample_rate_hz=SR)  # type: ignore[arg-type]


def test_empty_nan_and_tiny_inputs_have_defined_results():
    segmenter = OnsetSegmenter(SegmenterConfig(), sample_rate_hz=SR, clock=None)
    assert segmenter.process(np.zeros(0, np.float32)) == []
    assert segmenter.process(np.array([0.5], np.float32)) == []
    assert segmenter.process(np.full(1000, np.nan, np.float32)) == []  # non-finite samples count as silence
    assert segmenter.finish() == []


@pytest.mark.parametrize("rate_hz", [8000, 22050, 44100, 96000, 192000])
@pytest.mark.parametrize("channels", [1, 2, 8])
def test_any_rate_and_channel_count_through_the_front_end(rate_hz, channels):
    """8–192 kHz, 1–8 channels → the front end → one onset per note burst."""
    seconds = 1.2
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    mono = (0.4 * np.sin(2 * np.pi * 330.0 * t) * ((t > 0.2) & (t < 0.9))).astype(np.float32)
    block = np.repeat(mono[:, None], channels, axis=1)
    front = StreamingFrontEnd(input_rate_hz=rate_hz, channels=channels)
    internal = np.concatenate(
        [front.process(block[i : i + 512], last=i + 512 >= len(block)) for i in range(0, len(block), 512)]
    )
    events = segment_signal(internal, SegmenterConfig(), sample_rate_hz=SR)
    assert len(events) == 1
    assert abs(events[0].onset_s - 0.2) < 0.02
